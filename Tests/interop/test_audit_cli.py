"""`switchboard audit verify` on audit files whose hash chain Python computes itself.

The entries are built here from the format protocol-spec 12.9 documents — members in a fixed
order, compact JSON, `hash` the SHA-256 of the entry written without it, `previousHash` the hash
of the entry before — so a verifier in another language agreeing with `switchboard` shows the
format is portable. Then single bytes are changed, lines removed and swapped, and the command must
name the problem and its line (exit 1).
"""

from __future__ import annotations

import hashlib
import json
import subprocess

import pytest

from sbwire import switchboard_bin

ZEROS = "0" * 64
CLI_TIMEOUT = 60.0


def canonical(members: dict) -> bytes:
    """Compact JSON, members in the order given, only the escapes JSON requires."""
    return json.dumps(members, separators=(",", ":"), ensure_ascii=False).encode()


def chain(count: int) -> tuple[list[bytes], str]:
    """`count` entries as lines (without newlines), and the last hash."""
    lines = []
    previous = ZEROS
    for n in range(1, count + 1):
        entry = {
            "sequence": n,
            "time": f"2026-03-02T09:14:{n % 60:02d}.{n % 1000:03d}Z",
            "principal": "zoë \"z\"" if n % 2 else "alice",
            "tenant": "acme",
            "proof": "apiKey" if n % 2 else "jwt",
            "method": "tools/call" if n % 3 else "agents/register",
            "target": f"search\t{n}" if n % 2 else None,
            "outcome": "ok" if n % 3 else "refused",
            "error": None if n % 3 else {"code": -32005, "message": "Forbidden: alice may not agents/register"},
            "requestId": n if n % 2 else f"req-{n}",
            "connection": n % 4 or None,
            "replica": "replica-a",
            "previousHash": previous,
        }
        unhashed = canonical(entry)
        entry["hash"] = hashlib.sha256(unhashed).hexdigest()
        assert canonical(entry) == unhashed[:-1] + b',"hash":"' + entry["hash"].encode() + b'"}'
        lines.append(canonical(entry))
        previous = entry["hash"]
    return lines, previous


def write(path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def verify(path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(switchboard_bin()), "audit", "verify", str(path), *extra],
        capture_output=True, text=True, timeout=CLI_TIMEOUT,
    )


@pytest.fixture(autouse=True)
def _binary():
    if not switchboard_bin().is_file():
        pytest.fail(f"switchboard binary not found at {switchboard_bin()} (build it, or set SWITCHBOARD_BIN)")


def test_a_chain_computed_from_the_documented_format_verifies(tmp_path):
    lines, last = chain(8)
    path = tmp_path / "audit.jsonl"
    write(path, lines)
    result = verify(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == f"ok: 8 entries, last hash {last}\n"


def test_an_empty_file_is_an_empty_chain(tmp_path):
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"")
    result = verify(path)
    assert (result.returncode, result.stdout) == (0, f"ok: 0 entries, last hash {ZEROS}\n")


@pytest.mark.parametrize("find,replace", [(b'"alice"', b'"alicf"'), (b"09:14:04", b"09:14:05")])
def test_one_changed_byte_is_a_change_at_its_line(tmp_path, find, replace):
    lines, _ = chain(6)
    assert find in lines[3]
    lines[3] = lines[3].replace(find, replace, 1)
    path = tmp_path / "audit.jsonl"
    write(path, lines)
    result = verify(path)
    assert result.returncode == 1
    assert result.stdout.startswith("line 4: changed: "), result.stdout


def test_a_removed_middle_line_is_a_removal(tmp_path):
    lines, _ = chain(6)
    del lines[2]
    path = tmp_path / "audit.jsonl"
    write(path, lines)
    result = verify(path)
    assert result.returncode == 1
    assert result.stdout == "line 3: removed: entry 3 is missing\n"


def test_swapped_lines_are_a_reordering(tmp_path):
    lines, _ = chain(6)
    lines[1], lines[2] = lines[2], lines[1]
    path = tmp_path / "audit.jsonl"
    write(path, lines)
    result = verify(path)
    assert result.returncode == 1
    assert result.stdout.startswith("line 2: reordered: "), result.stdout


def test_entries_cut_from_the_end_show_only_against_a_kept_hash(tmp_path):
    lines, last = chain(6)
    path = tmp_path / "audit.jsonl"
    write(path, lines[:4])
    assert verify(path).returncode == 0
    result = verify(path, "--expect-last", last)
    assert result.returncode == 1
    assert result.stdout.startswith("line 5: removed: "), result.stdout
    write(path, lines)
    assert verify(path, "--expect-last", f"6:{last}").returncode == 0


def test_a_torn_last_line_is_malformed(tmp_path):
    lines, _ = chain(3)
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines) + lines[0][:20])
    result = verify(path)
    assert result.returncode == 1
    assert result.stdout.startswith("line 4: malformed: "), result.stdout


def test_a_missing_file_is_exit_2(tmp_path):
    result = verify(tmp_path / "nope.jsonl")
    assert result.returncode == 2
    assert "nope.jsonl" in result.stderr
