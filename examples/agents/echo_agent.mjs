#!/usr/bin/env node
// An MCP server over stdio with nothing but Node's standard library, for Switchboard to spawn.
//
//   agents:
//     echo: {command: node, args: [examples/agents/echo_agent.mjs], instances: 2, maxConcurrency: 8}
//
// The gateway starts it, sends `initialize`, `notifications/initialized` and `tools/list`, and
// then forwards its clients' `tools/call` requests. Two tools:
//
//   echo       {text}                      -> the text back
//   slow_echo  {text, delay?, steps?}      -> the text back after `delay` seconds (default 2),
//                                             with `steps` progress notifications (default 4)
//                                             when the call carries a progress token
//
// stdout carries the protocol: one JSON-RPC message per line. Everything else (log lines) goes
// to stderr, which the gateway copies into its own log under the instance's name (`echo#1`).
// Requests are served concurrently; `notifications/cancelled` stops a slow_echo in flight.

import readline from "node:readline";

const SERVER_INFO = { name: "echo-agent", title: "Echo agent (Node.js)", version: "1.0.0" };
const SUPPORTED_VERSIONS = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
const LATEST_VERSION = SUPPORTED_VERSIONS[SUPPORTED_VERSIONS.length - 1];

const TOOLS = [
  {
    name: "echo",
    title: "Echo",
    description: "Returns the text it is given.",
    inputSchema: {
      type: "object",
      properties: { text: { type: "string", description: "What to echo" } },
      required: ["text"],
    },
  },
  {
    name: "slow_echo",
    title: "Slow echo",
    description:
      "Returns the text after a delay, reporting progress along the way when the call has a progress token. Cancellable.",
    inputSchema: {
      type: "object",
      properties: {
        text: { type: "string", description: "What to echo" },
        delay: { type: "number", minimum: 0, maximum: 3600, description: "Seconds to wait before answering (default 2)" },
        steps: { type: "integer", minimum: 1, maximum: 1000, description: "Progress notifications to send (default 4)" },
      },
      required: ["text"],
    },
  },
];

const log = (...parts) => console.error(`echo-agent[${process.pid}]:`, ...parts);

// ---------------------------------------------------------------------------- wire

function send(message) {
  process.stdout.write(JSON.stringify({ jsonrpc: "2.0", ...message }) + "\n");
}

const reply = (id, result) => send({ id, result });
const fail = (id, code, message, data) => send({ id, error: { code, message, ...(data === undefined ? {} : { data }) } });

// ---------------------------------------------------------------------------- tools

// Calls in flight, by request id (as JSON text, so that 1 and "1" stay apart): how to cancel each.
const inFlight = new Map();

const text = (value) => ({ content: [{ type: "text", text: String(value) }] });
const toolError = (message) => ({ content: [{ type: "text", text: message }], isError: true });

async function callTool(id, params) {
  const args = params.arguments ?? {};
  switch (params.name) {
    case "echo":
      if (typeof args.text !== "string") return toolError("echo needs a string argument \"text\"");
      return text(args.text);
    case "slow_echo":
      return slowEcho(id, args, params._meta?.progressToken);
    default:
      return null; // unknown tool: an error response, see handleRequest
  }
}

function slowEcho(id, args, progressToken) {
  if (typeof args.text !== "string") return toolError("slow_echo needs a string argument \"text\"");
  const delay = args.delay ?? 2;
  const steps = args.steps ?? 4;
  if (typeof delay !== "number" || delay < 0 || delay > 3600) return toolError("delay must be a number of seconds from 0 to 3600");
  if (!Number.isInteger(steps) || steps < 1 || steps > 1000) return toolError("steps must be an integer from 1 to 1000");

  return new Promise((resolve) => {
    let done = 0;
    const tick = () => {
      done += 1;
      if (progressToken !== undefined) {
        send({
          method: "notifications/progress",
          params: { progressToken, progress: done, total: steps, message: `step ${done} of ${steps}` },
        });
      }
      if (done === steps) {
        inFlight.delete(JSON.stringify(id));
        resolve(text(args.text));
      } else {
        timer = setTimeout(tick, (delay * 1000) / steps);
      }
    };
    let timer = setTimeout(tick, (delay * 1000) / steps);
    // A cancelled request gets no response at all (MCP: the receiver should not answer it).
    inFlight.set(JSON.stringify(id), (reason) => {
      clearTimeout(timer);
      log(`cancelled request ${JSON.stringify(id)} (slow_echo): ${reason ?? "no reason given"}`);
      resolve(undefined);
    });
  });
}

// ---------------------------------------------------------------------------- dispatch

async function handleRequest({ id, method, params = {} }) {
  switch (method) {
    case "initialize": {
      const asked = params.protocolVersion;
      const client = params.clientInfo ? `${params.clientInfo.name} ${params.clientInfo.version ?? ""}`.trim() : "a client";
      log(`initialize from ${client} (protocol ${asked})`);
      return reply(id, {
        protocolVersion: SUPPORTED_VERSIONS.includes(asked) ? asked : LATEST_VERSION,
        capabilities: { tools: {} },
        serverInfo: SERVER_INFO,
        instructions: "echo returns its text; slow_echo does the same after a delay, with progress.",
      });
    }
    case "ping":
      return reply(id, {});
    case "tools/list":
      return reply(id, { tools: TOOLS });
    case "tools/call": {
      if (typeof params.name !== "string") return fail(id, -32602, "tools/call needs a tool name");
      const result = await callTool(id, params);
      if (result === null) return fail(id, -32602, `Unknown tool: ${params.name}`, { tool: params.name });
      if (result !== undefined) reply(id, result); // undefined: cancelled, no response
      return;
    }
    default:
      return fail(id, -32601, `Method not found: ${method}`, { method });
  }
}

function handleNotification({ method, params = {} }) {
  switch (method) {
    case "notifications/initialized":
      log("ready: tools", TOOLS.map((tool) => tool.name).join(", "));
      break;
    case "notifications/cancelled": {
      const cancel = inFlight.get(JSON.stringify(params.requestId));
      if (cancel) {
        inFlight.delete(JSON.stringify(params.requestId));
        cancel(params.reason);
      }
      break;
    }
    default:
      break; // other notifications need no action
  }
}

const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
lines.on("line", (line) => {
  if (line.trim() === "") return;
  let message;
  try {
    message = JSON.parse(line);
  } catch (error) {
    return fail(null, -32700, "Parse error", { reason: error.message });
  }
  if (typeof message !== "object" || message === null || Array.isArray(message)) {
    return fail(null, -32600, "Invalid Request");
  }
  if (typeof message.method === "string" && message.id !== undefined) {
    handleRequest(message).catch((error) => fail(message.id, -32603, "Internal error", { reason: String(error) }));
  } else if (typeof message.method === "string") {
    handleNotification(message);
  }
  // Anything else is a response; this server sends no requests, so there is nothing to match.
});

// The MCP way to stop a stdio server is to close its stdin.
lines.on("close", () => {
  log("stdin closed; exiting");
  process.exit(0);
});
process.on("SIGTERM", () => {
  log("SIGTERM; exiting");
  process.exit(0);
});

log("started");
