// Code points as llama.cpp's tokenizer sees them. Matching llama.cpp token for token means
// copying its view of Unicode, quirks included:
// - UTF-8 decoding is lenient: a lead byte followed by the right number of continuation bytes
//   is decoded even when overlong or a surrogate; any other byte becomes U+FFFD by itself.
// - Character classes are the Unicode general categories of the Unicode version llama.cpp's
//   tables were generated from (15.1): code points assigned later count as unassigned.

/// U+FFFD, what an undecodable byte turns into.
let replacementCharacter: UInt32 = 0xFFFD

/// Decodes UTF-8 leniently, as llama.cpp's unicode_cpts_from_utf8 does. One deviation: a
/// 4-byte form above U+10FFFF (llama.cpp throws there and the process dies) is treated as an
/// invalid lead byte, so each of its bytes becomes U+FFFD.
func decodeCodepoints(_ b: UnsafeBufferPointer<UInt8>) -> [UInt32] {
    var out: [UInt32] = []
    out.reserveCapacity(b.count)
    var i = 0
    while i < b.count {
        let (cp, n) = decodeOne(b, at: i)
        out.append(cp)
        i += n
    }
    return out
}

/// The code point at `i` and how many bytes it took.
private func decodeOne(_ b: UnsafeBufferPointer<UInt8>, at i: Int) -> (UInt32, Int) {
    let b0 = UInt32(b[i])
    let n: Int
    switch b0 {
    case 0x00...0x7F: return (b0, 1)
    case 0xC0...0xDF: n = 2
    case 0xE0...0xEF: n = 3
    case 0xF0...0xF7: n = 4
    default: return (replacementCharacter, 1)   // continuation byte as lead, or 0xF8...0xFF
    }
    guard i + n <= b.count else { return (replacementCharacter, 1) }
    var cp = b0 & (0x7F >> UInt32(n))
    for k in 1..<n {
        let c = UInt32(b[i + k])
        guard c & 0xC0 == 0x80 else { return (replacementCharacter, 1) }
        cp = cp << 6 | (c & 0x3F)
    }
    return cp <= 0x10FFFF ? (cp, n) : (replacementCharacter, 1)
}

/// Appends the UTF-8 form of a code point ≤ U+10FFFF. Surrogates get the 3-byte form, as in
/// llama.cpp, so a decoded surrogate re-encodes to the bytes it came from.
func appendUTF8(_ cp: UInt32, to out: inout [UInt8]) {
    switch cp {
    case 0..<0x80:
        out.append(UInt8(cp))
    case 0x80..<0x800:
        out.append(UInt8(0xC0 | cp >> 6))
        out.append(UInt8(0x80 | cp & 0x3F))
    case 0x800..<0x10000:
        out.append(UInt8(0xE0 | cp >> 12))
        out.append(UInt8(0x80 | cp >> 6 & 0x3F))
        out.append(UInt8(0x80 | cp & 0x3F))
    default:
        out.append(UInt8(0xF0 | cp >> 18))
        out.append(UInt8(0x80 | cp >> 12 & 0x3F))
        out.append(UInt8(0x80 | cp >> 6 & 0x3F))
        out.append(UInt8(0x80 | cp & 0x3F))
    }
}

/// The character classes the pre-tokenizer regexes ask about (\p{L}, \p{N}, \p{P}, \s).
/// Every code point has exactly one category bit, so an empty set means "past the end of
/// the text", which is how llama.cpp's splitters see out-of-range positions.
struct CharClass: OptionSet {
    let rawValue: UInt16
    static let letter = CharClass(rawValue: 1 << 0)
    static let number = CharClass(rawValue: 1 << 1)
    static let punctuation = CharClass(rawValue: 1 << 2)
    static let symbol = CharClass(rawValue: 1 << 3)
    static let mark = CharClass(rawValue: 1 << 4)
    static let separator = CharClass(rawValue: 1 << 5)
    static let control = CharClass(rawValue: 1 << 6)
    static let unassigned = CharClass(rawValue: 1 << 7)
    /// Not a category: the White_Space property, added on top of the category bit.
    static let whitespace = CharClass(rawValue: 1 << 8)

    /// The class of any code point ≤ U+10FFFF (surrogates included).
    static func of(_ cp: UInt32) -> CharClass {
        cp < 0x80 ? asciiTable[Int(cp)] : classify(cp)
    }

    private static let asciiTable: [CharClass] = (0..<0x80).map { classify(UInt32($0)) }

    private static func classify(_ cp: UInt32) -> CharClass {
        let ws: CharClass = isWhitespace(cp) ? .whitespace : []
        guard let s = Unicode.Scalar(cp) else { return [.control] }   // a surrogate: Cs
        // llama.cpp's tables stop at Unicode 15.1.
        if let age = s.properties.age, age.major >= 16 { return [.unassigned] }
        return ws.union(category(s.properties.generalCategory))
    }

    private static func category(_ c: Unicode.GeneralCategory) -> CharClass {
        switch c {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation: return .punctuation
        case .mathSymbol, .currencySymbol, .modifierSymbol, .otherSymbol: return .symbol
        case .nonspacingMark, .spacingMark, .enclosingMark: return .mark
        case .spaceSeparator, .lineSeparator, .paragraphSeparator: return .separator
        case .control, .format, .surrogate, .privateUse: return .control
        case .unassigned: return .unassigned
        @unknown default: return .unassigned
        }
    }

    /// Unicode's White_Space property: what `\s` matches in the tokenizer regexes.
    private static func isWhitespace(_ cp: UInt32) -> Bool {
        switch cp {
        case 0x09...0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
            return true
        default:
            return false
        }
    }
}
