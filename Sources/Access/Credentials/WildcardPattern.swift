/// A value pattern where `*` stands for any run of characters (none included) and everything
/// else stands for itself; a pattern without `*` is an exact match. Comparison is by UTF-8 bytes,
/// so there is no case folding or normalisation that could make two names equal by surprise.
struct WildcardPattern: Sendable, Hashable {
    let text: String
    private let pieces: [[UInt8]]

    init(_ text: String) {
        self.text = text
        self.pieces = text.utf8.split(separator: UInt8(ascii: "*"), omittingEmptySubsequences: false).map(Array.init)
    }

    func matches(_ candidate: String) -> Bool {
        let value = Array(candidate.utf8)
        guard let first = pieces.first, let last = pieces.last else { return value.isEmpty }
        if pieces.count == 1 { return value == first }
        // The first piece anchors the start, the last the end; the middle ones are found in
        // order, leftmost first, which is enough when `*` is the only wildcard.
        guard value.count >= first.count + last.count, value.starts(with: first), value.suffix(last.count).elementsEqual(last) else {
            return false
        }
        var position = first.count
        let end = value.count - last.count
        for piece in pieces.dropFirst().dropLast() where !piece.isEmpty {
            guard let found = Self.firstIndex(of: piece, in: value, from: position, before: end) else { return false }
            position = found + piece.count
        }
        return true
    }

    private static func firstIndex(of piece: [UInt8], in value: [UInt8], from start: Int, before end: Int) -> Int? {
        guard end - start >= piece.count else { return nil }
        for index in start...(end - piece.count) where value[index..<(index + piece.count)].elementsEqual(piece) {
            return index
        }
        return nil
    }
}
