import JSONRPC
import Yams

/// The most a YAML or JSON document may hold, so that no document — a workflow definition sent
/// by a client, a configuration file — can take the gateway's memory or time. Aliases are the
/// danger: a few hundred bytes of nested `&anchor`s and `*alias`es expand to billions of nodes.
public struct DocumentBounds: Sendable, Hashable {
    /// The text's size in bytes (UTF-8).
    public var maximumBytes: Int
    /// How many aliases (`*name`) the document uses.
    public var maximumAliases: Int
    /// How many nodes (scalars, lists, mappings, keys included) the document would have with
    /// every alias replaced by what it names.
    public var maximumExpandedNodes: Int
    /// How deep lists and mappings nest (the root is at depth 1), aliases expanded.
    public var maximumDepth: Int

    public init(maximumBytes: Int, maximumAliases: Int, maximumExpandedNodes: Int, maximumDepth: Int) {
        self.maximumBytes = maximumBytes
        self.maximumAliases = maximumAliases
        self.maximumExpandedNodes = maximumExpandedNodes
        self.maximumDepth = maximumDepth
    }

    /// A workflow definition: the largest real ones are tens of KiB and a few hundred steps.
    public static let workflowDefinition = DocumentBounds(
        maximumBytes: 1 << 20, maximumAliases: 100, maximumExpandedNodes: 100_000, maximumDepth: 64)
    /// A configuration file: larger, since an MCP host's file may list many servers.
    public static let configurationFile = DocumentBounds(
        maximumBytes: 4 << 20, maximumAliases: 100, maximumExpandedNodes: 100_000, maximumDepth: 64)
    /// Steps of one workflow, nested steps and compensations included: validation compares
    /// steps with each other, so its cost grows faster than the count.
    public static let maximumWorkflowSteps = 1000
}

/// A document refused because it passes one of its bounds; the message names the bound and its
/// value.
public struct DocumentBoundExceeded: Error, Sendable, Hashable, CustomStringConvertible {
    /// Which bound; the raw value is the name clients read (`data.problems[].bound`).
    public enum Bound: String, Sendable, Hashable {
        case size = "documentSize"
        case aliases = "aliasCount"
        case expandedSize = "expandedSize"
        case depth = "depth"
        case steps = "stepCount"

        /// The bound's name for people.
        public var label: String {
            switch self {
            case .size: "document size"
            case .aliases: "alias count"
            case .expandedSize: "expanded size"
            case .depth: "depth"
            case .steps: "step count"
            }
        }
    }

    public var bound: Bound
    public var limit: Int
    /// Where it was noticed (1-based), when it is one place.
    public var line: Int?
    public var column: Int?

    public init(_ bound: Bound, limit: Int, line: Int? = nil, column: Int? = nil) {
        self.bound = bound
        self.limit = limit
        self.line = line
        self.column = column
    }

    public var message: String {
        let what =
            switch bound {
            case .size: "the document is larger than \(limit) bytes"
            case .aliases: "the document uses more than \(limit) aliases"
            case .expandedSize: "the document expands to more than \(limit) nodes through its aliases"
            case .depth: "the document nests deeper than \(limit) levels"
            case .steps: "the workflow has more than \(limit) steps (nested steps and compensations included)"
            }
        return "\(what) (the limit of \(bound.label))"
    }

    public var description: String { message }
}

/// Composes YAML (JSON is YAML) with Yams only once the document is known to stay within its
/// bounds.
///
/// Yams resolves an alias to the node it names, shared, so composing is linear; but anything
/// that walks the result (conversion, hashing a mapping's keys — which Yams itself does to find
/// duplicate keys) expands every alias. So the text is first composed with every `*` replaced
/// by a character it does not contain: aliases become plain scalars at the same line and column,
/// nothing is shared, and one walk counts aliases, depth and expanded size, remembering the
/// size of each anchored node. Only then is the real text composed.
public enum BoundedDocument {
    public static func compose(_ text: String, within bounds: DocumentBounds) throws -> Node? {
        let size = text.utf8.count
        guard size <= bounds.maximumBytes else { throw DocumentBoundExceeded(.size, limit: bounds.maximumBytes) }
        guard text.utf8.contains(UInt8(ascii: "*")) else {
            // No aliases: the tree is what the text says.
            let parser = try Parser(yaml: text)
            let root = try parser.singleRoot()
            if let root {
                var meter = DocumentMeter(bounds: bounds, aliasMarker: nil)
                try meter.measure(root)
            }
            return root
        }
        guard let marker = AliasMarker(absentFrom: text) else {
            // Only a text holding all 6,400 private-use characters gets here.
            throw DocumentBoundExceeded(.aliases, limit: bounds.maximumAliases)
        }
        let measured = String(String.UnicodeScalarView(text.unicodeScalars.lazy.map { $0 == "*" ? marker.scalar : $0 }))
        // The parser owns the anchors that nodes refer to (weakly): keep it alive while measuring.
        let parser = try Parser(yaml: measured)
        if let root = try parser.singleRoot() {
            var meter = DocumentMeter(bounds: bounds, aliasMarker: marker)
            try withExtendedLifetime(parser) { try meter.measure(root) }
        }
        return try Yams.compose(yaml: text)
    }

    /// Measures a JSON value against `bounds` (JSON has no aliases: nodes and depth), and its
    /// compact encoding against the size bound.
    public static func check(_ value: JSONValue, within bounds: DocumentBounds) throws(DocumentBoundExceeded) {
        var nodes = 0
        func walk(_ value: JSONValue, depth: Int) throws(DocumentBoundExceeded) {
            guard depth <= bounds.maximumDepth else { throw DocumentBoundExceeded(.depth, limit: bounds.maximumDepth) }
            nodes += 1
            guard nodes <= bounds.maximumExpandedNodes else { throw DocumentBoundExceeded(.expandedSize, limit: bounds.maximumExpandedNodes) }
            switch value {
            case .object(let members):
                for (_, member) in members {
                    nodes += 1
                    try walk(member, depth: depth + 1)
                }
            case .array(let elements):
                for element in elements { try walk(element, depth: depth + 1) }
            case .raw(let raw):
                nodes -= 1
                try walk(raw.decoded(), depth: depth)
            default:
                break
            }
        }
        try walk(value, depth: 1)
        guard value.encoded.utf8.count <= bounds.maximumBytes else { throw DocumentBoundExceeded(.size, limit: bounds.maximumBytes) }
    }
}

/// The character that stands for `*` while a document is measured: one from Unicode's private
/// use area that the text does not contain, so a plain scalar starting with it was an alias.
struct AliasMarker {
    let scalar: Unicode.Scalar

    init?(absentFrom text: String) {
        var present = Set<UInt32>()
        for scalar in text.unicodeScalars where (0xE000...0xF8FF).contains(scalar.value) { present.insert(scalar.value) }
        guard let free = (UInt32(0xE000)...0xF8FF).first(where: { !present.contains($0) }) else { return nil }
        scalar = Unicode.Scalar(free)!
    }

    /// The anchor an alias stand-in names: the characters libyaml allows in anchors.
    func anchorName(_ text: String) -> String? {
        guard text.unicodeScalars.first == scalar else { return nil }
        let name = text.unicodeScalars.dropFirst().prefix { ("0"..."9").contains($0) || ("a"..."z").contains($0) || ("A"..."Z").contains($0) || $0 == "_" || $0 == "-" }
        return String(String.UnicodeScalarView(name))
    }
}

/// One walk over a composed tree in which nothing is shared: counts nodes as if every alias
/// were expanded, using the remembered size and height of the anchored node it names.
struct DocumentMeter {
    struct Measure {
        var nodes: Int
        var height: Int
    }

    let bounds: DocumentBounds
    let aliasMarker: AliasMarker?
    private(set) var nodes = 0
    private(set) var aliases = 0
    private var anchored: [String: Measure] = [:]

    init(bounds: DocumentBounds, aliasMarker: AliasMarker?) {
        self.bounds = bounds
        self.aliasMarker = aliasMarker
    }

    mutating func measure(_ root: Node) throws(DocumentBoundExceeded) {
        _ = try measure(root, depth: 1)
    }

    /// The node's height (1 for a scalar); adds its expanded size to `nodes`.
    private mutating func measure(_ node: Node, depth: Int) throws(DocumentBoundExceeded) -> Int {
        let mark = node.mark
        func exceeded(_ bound: DocumentBoundExceeded.Bound, _ limit: Int) -> DocumentBoundExceeded {
            DocumentBoundExceeded(bound, limit: limit, line: mark?.line, column: mark?.column)
        }
        guard depth <= bounds.maximumDepth else { throw exceeded(.depth, bounds.maximumDepth) }
        if case .scalar(let scalar) = node, scalar.style == .plain, let name = aliasMarker?.anchorName(scalar.string) {
            aliases += 1
            guard aliases <= bounds.maximumAliases else { throw exceeded(.aliases, bounds.maximumAliases) }
            // An unknown name is the parser's error to report, on the real text.
            let target = anchored[name] ?? Measure(nodes: 1, height: 1)
            guard depth + target.height - 1 <= bounds.maximumDepth else { throw exceeded(.depth, bounds.maximumDepth) }
            try count(target.nodes, exceeded)
            return target.height
        }
        let before = nodes
        try count(1, exceeded)
        var height = 1
        switch node {
        case .mapping(let mapping):
            for (key, value) in mapping {
                height = max(height, 1 + (try measure(key, depth: depth + 1)))
                height = max(height, 1 + (try measure(value, depth: depth + 1)))
            }
        case .sequence(let sequence):
            for item in sequence { height = max(height, 1 + (try measure(item, depth: depth + 1))) }
        case .scalar, .alias:
            break
        }
        if let anchor = node.anchor?.rawValue { anchored[anchor] = Measure(nodes: nodes - before, height: height) }
        return height
    }

    private mutating func count(_ added: Int, _ exceeded: (DocumentBoundExceeded.Bound, Int) -> DocumentBoundExceeded) throws(DocumentBoundExceeded) {
        // `nodes` never passes the bound, and neither does a remembered size: no overflow.
        nodes += added
        guard nodes <= bounds.maximumExpandedNodes else { throw exceeded(.expandedSize, bounds.maximumExpandedNodes) }
    }
}

extension Node {
    fileprivate var anchor: Anchor? {
        switch self {
        case .scalar(let scalar): scalar.anchor
        case .mapping(let mapping): mapping.anchor
        case .sequence(let sequence): sequence.anchor
        case .alias: nil
        }
    }
}
