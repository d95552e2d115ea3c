import JSONRPC
import NIOCore

/// The OpenAPI 3.1 description of `/api/v1`, written from the route table.
enum OpenAPIDocument {
    static func render(routes: [RESTRoute]) -> ByteBuffer {
        var paths: [String: [String: JSONValue]] = [:]
        for route in routes {
            var operation: [String: JSONValue] = [
                "operationId": .string(route.operationID),
                "summary": .string(route.summary),
                "description": .string("Runs the JSON-RPC method \(route.rpcMethod) (protocol-spec) as the request's principal."),
                "responses": responses(for: route),
            ]
            var parameters: [JSONValue] = []
            for case .parameter(let name) in route.segments {
                parameters.append(["name": .string(name), "in": "path", "required": true, "schema": ["type": "string", "minLength": 1]])
            }
            for parameter in route.query {
                parameters.append([
                    "name": .string(parameter.name), "in": "query", "required": false,
                    "description": .string(parameter.description), "schema": parameter.type.schema,
                ])
            }
            if !parameters.isEmpty { operation["parameters"] = .array(parameters) }
            switch route.body {
            case .none: break
            case .object(let schema):
                // A body with required members is itself required.
                let required = schema["required"] != nil || schema["anyOf"] != nil
                operation["requestBody"] = ["required": .bool(required), "content": ["application/json": ["schema": schema]]]
            case .value:
                operation["requestBody"] = ["required": false, "content": ["application/json": ["schema": [:]]]]
            }
            paths[route.path, default: [:]]["\(route.method)".lowercased()] = .object(operation)
        }
        let document: JSONValue = [
            "openapi": "3.1.0",
            "info": [
                "title": "Switchboard REST API",
                "version": "1",
                "description": "The platform API of the Switchboard agent gateway. Each route runs the same method as its JSON-RPC twin; errors carry the JSON-RPC error beside the HTTP status.",
            ],
            "servers": [["url": "/api/v1"]],
            "paths": .object(paths.mapValues(JSONValue.object)),
            "components": [
                "schemas": [
                    "Error": [
                        "type": "object", "required": ["error", "status"],
                        "properties": [
                            "error": [
                                "type": "object", "required": ["code", "message"],
                                "properties": ["code": ["type": "integer"], "message": ["type": "string"], "data": [:]],
                            ],
                            "status": ["type": "integer"],
                            "path": ["type": "string"],
                        ],
                    ]
                ],
                "securitySchemes": ["bearer": ["type": "http", "scheme": "bearer", "description": "An API key or a JWT, as auth/authenticate takes"]],
            ],
            "security": [["bearer": []], [:]],
        ]
        var buffer = ByteBuffer()
        document.write(to: &buffer)
        return buffer
    }

    private static func responses(for route: RESTRoute) -> JSONValue {
        let error: JSONValue = ["description": "An error: the JSON-RPC error and the HTTP status", "content": ["application/json": ["schema": ["$ref": "#/components/schemas/Error"]]]]
        var responses: [String: JSONValue] = [
            "200": ["description": "The method's result", "content": ["application/json": ["schema": route.result]]]
        ]
        if route.rpcMethod == "tasks/result" {
            responses["202"] = ["description": "The task has not ended (wait=0): its TaskStatus", "content": ["application/json": ["schema": ["type": "object"]]]]
        }
        for status in ["400", "401", "403", "404", "405", "409", "413", "422", "429", "500", "502", "503", "504"] {
            responses[status] = error
        }
        return .object(responses)
    }
}
