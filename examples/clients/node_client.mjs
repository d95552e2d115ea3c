#!/usr/bin/env node
// A Switchboard client with nothing but Node's standard library (`net`).
//
//   switchboard serve --listen tcp://127.0.0.1:7400 &
//   node node_client.mjs                          # tcp://127.0.0.1:7400
//   node node_client.mjs unix:///run/sb.sock      # a Unix socket listener
//
// Sends `ping`, `tools/list` and `gateway/status` as newline-delimited
// JSON-RPC 2.0 and prints the replies. Exit status 0 when all succeed.

import net from "node:net";

const url = process.argv[2] ?? "tcp://127.0.0.1:7400";

function connect(url) {
  const [scheme, rest] = url.split("://");
  if (scheme === "tcp") {
    const i = rest.lastIndexOf(":");
    return net.connect({ host: rest.slice(0, i).replace(/^\[|\]$/g, ""), port: Number(rest.slice(i + 1)) });
  }
  if (scheme === "unix") return net.connect({ path: rest });
  throw new Error(`unsupported URL ${url}: use tcp://HOST:PORT or unix:///PATH`);
}

const socket = connect(url);
const pending = new Map(); // id -> { resolve, reject }
let nextId = 0;
let buffered = "";

socket.setEncoding("utf8");
socket.on("data", (chunk) => {
  buffered += chunk;
  let newline;
  // One JSON text per line.
  while ((newline = buffered.indexOf("\n")) >= 0) {
    const line = buffered.slice(0, newline);
    buffered = buffered.slice(newline + 1);
    if (line.trim() === "") continue;
    const reply = JSON.parse(line);
    const waiter = pending.get(reply.id);
    if (waiter) {
      pending.delete(reply.id);
      waiter.resolve(reply);
    }
  }
});
socket.on("error", (err) => {
  for (const waiter of pending.values()) waiter.reject(err);
  pending.clear();
});
socket.on("close", () => {
  for (const waiter of pending.values()) waiter.reject(new Error("the gateway closed the connection"));
  pending.clear();
});

function call(method, params) {
  const id = ++nextId;
  const request = { jsonrpc: "2.0", id, method, ...(params === undefined ? {} : { params }) };
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    socket.write(JSON.stringify(request) + "\n");
  });
}

const timer = setTimeout(() => {
  console.error("timed out waiting for the gateway");
  process.exit(1);
}, 10_000);

let ok = true;
try {
  await new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  for (const method of ["ping", "tools/list", "gateway/status"]) {
    const reply = await call(method);
    if (reply.error) {
      ok = false;
      console.log(`${method}: error ${reply.error.code}: ${reply.error.message}`);
      continue;
    }
    const result = reply.result;
    if (method === "ping") {
      console.log("ping: ok");
    } else if (method === "tools/list") {
      console.log(`tools/list: ${result.tools.length} tool(s) ${JSON.stringify(result.tools.map((t) => t.name))}`);
    } else {
      const { server, connections, listeners } = result;
      console.log(
        `gateway/status: ${server.name} ${server.version}, up ${result.uptimeSeconds.toFixed(1)}s, ` +
          `${connections.open} open / ${connections.accepted} accepted connection(s), ` +
          `listeners ${JSON.stringify(listeners)}`,
      );
    }
  }
} catch (err) {
  ok = false;
  console.error(`failed: ${err.message}`);
} finally {
  clearTimeout(timer);
  socket.end();
}
process.exitCode = ok ? 0 : 1;
