#!/usr/bin/env python3
"""A trading desk's toy MCP server over stdio (Python standard library only), for the example
workflows in examples/workflows/.

    agents:
      trading: {command: python3, args: [examples/agents/trading_agent.py], instances: 1, maxConcurrency: 16}

Tools (every result carries `structuredContent`, which workflow steps read as their result):

    market_signal {symbol, model?}                      a score from -1 (sell) to 1 (buy) for one
                                                         model (momentum, mean_reversion,
                                                         sentiment), with a price
    risk_check    {symbol?, side?, quantity?, price?}   whether an order (or, without symbol,
                                                         the whole book) stays within limits;
                                                         over the limit, the excess quantity and
                                                         the side that hedges it
    place_order   {symbol, side, quantity, limitPrice?, clientOrderId?}
                                                         fills at once; the same clientOrderId
                                                         returns the first fill (safe to retry)
    cancel_order  {orderId? | clientOrderId?}           cancels, and unwinds the position
    report        {title, data?}                        writes a report to stderr

Prices and scores are made up but repeatable: they depend on the symbol, the model and the day.
Positions live in the process's memory. stdout carries the protocol, one JSON-RPC message per
line; log lines go to stderr.
"""

import datetime
import hashlib
import json
import os
import sys

SERVER_INFO = {"name": "trading-agent", "title": "Trading desk (example)", "version": "1.0.0"}
SUPPORTED_VERSIONS = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"]
MAX_NOTIONAL = 1_000_000.0  # per symbol
MODELS = ["momentum", "mean_reversion", "sentiment"]

TOOLS = [
    {
        "name": "market_signal",
        "title": "Market signal",
        "description": "A trading signal for one symbol from one analysis model: score -1 (sell) to 1 (buy).",
        "inputSchema": {
            "type": "object",
            "properties": {
                "symbol": {"type": "string"},
                "model": {"type": "string", "enum": MODELS, "description": "Default momentum"},
            },
            "required": ["symbol"],
        },
    },
    {
        "name": "risk_check",
        "title": "Risk check",
        "description": "Checks an order, or the whole book when no symbol is given, against notional limits.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "symbol": {"type": "string"},
                "side": {"type": "string", "enum": ["buy", "sell"]},
                "quantity": {"type": "number", "minimum": 0},
                "price": {"type": "number", "exclusiveMinimum": 0},
            },
        },
    },
    {
        "name": "place_order",
        "title": "Place order",
        "description": "Places an order that fills at once. A repeated clientOrderId returns the first fill.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "symbol": {"type": "string"},
                "side": {"type": "string", "enum": ["buy", "sell"]},
                "quantity": {"type": "number", "exclusiveMinimum": 0},
                "limitPrice": {"type": "number", "exclusiveMinimum": 0},
                "clientOrderId": {"type": "string"},
            },
            "required": ["symbol", "side", "quantity"],
        },
    },
    {
        "name": "cancel_order",
        "title": "Cancel order",
        "description": "Cancels an order by orderId or clientOrderId and unwinds its position.",
        "inputSchema": {
            "type": "object",
            "properties": {"orderId": {"type": "string"}, "clientOrderId": {"type": "string"}},
        },
    },
    {
        "name": "report",
        "title": "Report",
        "description": "Writes a report (to the agent's log) and returns its id.",
        "inputSchema": {
            "type": "object",
            "properties": {"title": {"type": "string"}, "data": {}},
            "required": ["title"],
        },
    },
]

positions = {}  # symbol -> signed quantity
orders = {}  # orderId -> order
orders_by_client_id = {}
report_count = 0


def log(*parts):
    print(f"trading-agent[{os.getpid()}]:", *parts, file=sys.stderr, flush=True)


def send(message):
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", **message}, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def unit(*parts):
    """A repeatable number in [0, 1) from its parts."""
    digest = hashlib.sha256(":".join(str(part) for part in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def price_of(symbol):
    today = datetime.date.today().isoformat()
    base = 20 + unit(symbol, "base") * 480
    return round(base * (0.98 + unit(symbol, today) * 0.04), 2)


class ToolError(Exception):
    pass


def market_signal(args):
    symbol = args.get("symbol")
    model = args.get("model", "momentum")
    if not isinstance(symbol, str) or not symbol:
        raise ToolError("market_signal needs a symbol")
    if model not in MODELS:
        raise ToolError(f"unknown model {model!r}; one of {', '.join(MODELS)}")
    today = datetime.date.today().isoformat()
    score = round(unit(symbol, model, today) * 2 - 1, 3)
    return {
        "symbol": symbol,
        "model": model,
        "score": score,
        "confidence": round(0.5 + unit(symbol, model, "confidence") / 2, 2),
        "price": price_of(symbol),
        "asOf": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def risk_check(args):
    symbol = args.get("symbol")
    if not symbol:  # the whole book
        exposures = {name: round(quantity * price_of(name), 2) for name, quantity in positions.items() if quantity}
        breaches = [name for name, value in exposures.items() if abs(value) > MAX_NOTIONAL]
        return {"approved": not breaches, "exposures": exposures, "breaches": breaches, "limit": MAX_NOTIONAL,
                "summary": f"{len(exposures)} positions, {len(breaches)} over the limit"}
    side = args.get("side", "buy")
    quantity = float(args.get("quantity", 0))
    price = float(args.get("price") or price_of(symbol))
    signed = quantity if side == "buy" else -quantity
    after = positions.get(symbol, 0) + signed
    exposure = abs(after * price)
    excess = max(0.0, exposure - MAX_NOTIONAL) / price
    approved = exposure <= MAX_NOTIONAL
    return {
        "approved": approved,
        "symbol": symbol,
        "notional": round(quantity * price, 2),
        "positionAfter": after,
        "exposureAfter": round(exposure, 2),
        "limit": MAX_NOTIONAL,
        "excessQuantity": int(excess) + (1 if excess % 1 else 0),
        "hedgeSide": "sell" if after > 0 else "buy",
        "summary": f"exposure {exposure:,.0f} of {MAX_NOTIONAL:,.0f}" + ("" if approved else " (over the limit)"),
    }


def place_order(args):
    symbol, side = args.get("symbol"), args.get("side")
    quantity = args.get("quantity")
    if not symbol or side not in ("buy", "sell"):
        raise ToolError("place_order needs a symbol and a side (buy or sell)")
    if not isinstance(quantity, (int, float)) or quantity <= 0:
        raise ToolError("place_order needs a quantity above 0")
    client_id = args.get("clientOrderId")
    if client_id and client_id in orders_by_client_id:
        return orders[orders_by_client_id[client_id]]  # a retry: the first fill, not a second order
    price = price_of(symbol)
    limit = args.get("limitPrice")
    if limit is not None and ((side == "buy" and price > limit) or (side == "sell" and price < limit)):
        raise ToolError(f"not filled: market {price} is through the limit {limit}")
    order_id = f"ord-{len(orders) + 1}"
    order = {"orderId": order_id, "clientOrderId": client_id, "symbol": symbol, "side": side, "quantity": quantity,
             "status": "FILLED", "avgPrice": price}
    orders[order_id] = order
    if client_id:
        orders_by_client_id[client_id] = order_id
    positions[symbol] = positions.get(symbol, 0) + (quantity if side == "buy" else -quantity)
    log(f"{order_id}: {side} {quantity} {symbol} at {price}")
    return order


def cancel_order(args):
    order_id = args.get("orderId") or orders_by_client_id.get(args.get("clientOrderId"))
    order = orders.get(order_id)
    if order is None:
        return {"orderId": order_id, "status": "NOT_FOUND"}  # nothing to undo: compensation succeeds
    if order["status"] != "CANCELLED":
        signed = order["quantity"] if order["side"] == "buy" else -order["quantity"]
        positions[order["symbol"]] = positions.get(order["symbol"], 0) - signed
        order["status"] = "CANCELLED"
        log(f"{order_id}: cancelled")
    return order


def report(args):
    global report_count
    title = args.get("title")
    if not isinstance(title, str):
        raise ToolError("report needs a title")
    report_count += 1
    body = json.dumps(args.get("data"), indent=2, sort_keys=True)
    log(f"report {report_count}: {title}\n{body}")
    return {"reportId": f"rep-{report_count}", "title": title, "lines": body.count("\n") + 1}


HANDLERS = {"market_signal": market_signal, "risk_check": risk_check, "place_order": place_order,
            "cancel_order": cancel_order, "report": report}


def handle_request(message):
    request_id, method, params = message["id"], message["method"], message.get("params") or {}
    if method == "initialize":
        asked = params.get("protocolVersion")
        return send({"id": request_id, "result": {
            "protocolVersion": asked if asked in SUPPORTED_VERSIONS else SUPPORTED_VERSIONS[-1],
            "capabilities": {"tools": {}},
            "serverInfo": SERVER_INFO,
            "instructions": "Signals, risk checks, orders and reports for the example trading workflows.",
        }})
    if method == "ping":
        return send({"id": request_id, "result": {}})
    if method == "tools/list":
        return send({"id": request_id, "result": {"tools": TOOLS}})
    if method == "tools/call":
        handler = HANDLERS.get(params.get("name"))
        if handler is None:
            return send({"id": request_id, "error": {"code": -32602, "message": f"Unknown tool: {params.get('name')}",
                                                     "data": {"tool": params.get("name")}}})
        try:
            result = handler(params.get("arguments") or {})
        except ToolError as error:  # a tool failure is a result with isError, as MCP says
            return send({"id": request_id, "result": {"content": [{"type": "text", "text": str(error)}], "isError": True}})
        return send({"id": request_id, "result": {
            "content": [{"type": "text", "text": json.dumps(result, sort_keys=True)}],
            "structuredContent": result,
            "isError": False,
        }})
    send({"id": request_id, "error": {"code": -32601, "message": f"Method not found: {method}", "data": {"method": method}}})


def main():
    log("started")
    for line in sys.stdin:  # the MCP way to stop a stdio server is to close its stdin
        if not line.strip():
            continue
        try:
            message = json.loads(line)
        except ValueError as error:
            send({"id": None, "error": {"code": -32700, "message": "Parse error", "data": {"reason": str(error)}}})
            continue
        if not isinstance(message, dict):
            send({"id": None, "error": {"code": -32600, "message": "Invalid Request"}})
        elif isinstance(message.get("method"), str) and "id" in message:
            try:
                handle_request(message)
            except Exception as error:  # keep serving; report the defect to the caller
                send({"id": message["id"], "error": {"code": -32603, "message": "Internal error", "data": {"reason": str(error)}}})
        elif message.get("method") == "notifications/initialized":
            log("ready: tools", ", ".join(tool["name"] for tool in TOOLS))
    log("stdin closed; exiting")


if __name__ == "__main__":
    main()
