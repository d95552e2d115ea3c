"""The REST API's OpenAPI document (protocol-spec 14.8): it validates as OpenAPI 3.1, and
schemathesis, generating requests from it, finds no mismatch with the running gateway: every
response's status, content type and body are the ones the document declares, requests that
break the schema are refused, and nothing answers 5xx.

Schemathesis's check that every schema-valid request is accepted is left out, and only that
one: what a valid workflow definition, a cursor from an earlier page or an existing execution
is cannot be said in a schema, and the gateway refuses those with 400 or 404 as the document
declares.
"""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
from openapi_spec_validator import validate

from test_http import http_gateway


def test_the_document_validates_as_openapi_3_1(start_gateway, tmp_path):
    gw, base = http_gateway(start_gateway, tmp_path)
    document = httpx.get(f"{base}/api/v1/openapi.json", timeout=10).json()
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_schemathesis_finds_no_mismatch(start_gateway, tmp_path):
    gw, base = http_gateway(start_gateway, tmp_path)
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{base}/api/v1/openapi.json", "--url", f"{base}/api/v1",
        "--checks", "all", "--exclude-checks", "positive_data_acceptance",
        "--max-examples", "25", "--seed", "1", "--request-timeout", "30",
        # Registering agents at random URLs would have the gateway connect to them: that route
        # has its own test (test_http.py), with a real agent behind the URL.
        "--exclude-operation-id", "registerAgent",
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "Tested: 25" in run.stdout, run.stdout[-3000:]  # every other operation was tested
