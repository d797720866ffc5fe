"""Gzip that is byte-identical to Go's ``compress/gzip`` at ``DefaultCompression``.

The Go runtime of ampy-bus (``runtime/ampybus/publish.go``) compresses large
payloads with ``gzip.NewWriterLevel(nil, gzip.DefaultCompression)``, a zero
``gzip.Header`` and a single ``Write`` followed by ``Close``.  Python publishers
must put exactly the same bytes on the wire, so this module re-implements the
choices Go's ``compress/flate`` makes at level 6 (the level ``DefaultCompression``
maps to), as of Go 1.26:

* LZ77 with a 32 KiB window held in a 64 KiB buffer that slides by 32 KiB,
  4-byte multiplicative hashing into 2**17 hash chains, at most 128 chain
  candidates per search, "nice" length 128, "good" length 8, lazy matching
  while the previous match is shorter than 16, a minimum emitted match of 4
  bytes (and 4-byte matches only within 4096 bytes of distance);
* a block is flushed every 16384 tokens and at ``Close``; each block is written
  as whichever of fixed Huffman, dynamic Huffman or stored is smallest by Go's
  own size estimates (stored only while the block's bytes are still in the
  window buffer and fit in 65535 bytes);
* Huffman code lengths come from Go's package-merge style ``bitCounts``
  (15-bit limit for literals/lengths and distances, 7 bits for the code-length
  alphabet), with codes assigned in canonical order, and the dynamic header's
  code-length run-length encoding exactly as Go generates it;
* ``Close`` ends the stream with an empty, final stored block;
* the gzip header is ``1f 8b 08``, no flags, MTIME 0, XFL 0 and OS 255
  (unknown); the trailer is the CRC-32 and the length modulo 2**32.

The standard library's :mod:`zlib` cannot be used for the compression itself:
zlib's deflate implementation makes different matching, block-splitting and
Huffman choices from Go's, so although both produce valid streams, their
bytes differ.  Only :func:`zlib.crc32` is used here.

The algorithm is that of Go's standard library (compress/flate, BSD-style
licence, Copyright The Go Authors), written anew in Python; the Go test
TestPythonAgreesWithGo (gen/pyemit) holds the two byte-identical.
"""

from __future__ import annotations

import struct
import zlib
from collections import Counter
from typing import Final, Optional, Sequence

__all__ = ["compress"]

# ---------------------------------------------------------------------------
# Parameters of Go's compress/flate (deflate.go) and level 6.
# ---------------------------------------------------------------------------

_WINDOW_SIZE: Final = 1 << 15
_BUFFER_SIZE: Final = 2 * _WINDOW_SIZE  # Go keeps two windows' worth of bytes.

_BASE_MATCH_LENGTH: Final = 3  # Smallest length the format can express.
_MIN_MATCH_LENGTH: Final = 4  # Smallest length Go actually emits.
_MAX_MATCH_LENGTH: Final = 258
_BASE_MATCH_OFFSET: Final = 1
_LOOKAHEAD_NEEDED: Final = _MIN_MATCH_LENGTH + _MAX_MATCH_LENGTH
_SLIDE_AT: Final = _BUFFER_SIZE - _LOOKAHEAD_NEEDED

_MAX_BLOCK_TOKENS: Final = 1 << 14
_MAX_STORED_BLOCK: Final = 65535

_HASH_BITS: Final = 17
_HASH_SIZE: Final = 1 << _HASH_BITS
_HASH_MUL: Final = 0x1E35A7BD
_HASH_SHIFT: Final = 32 - _HASH_BITS
_MAX_HASH_OFFSET: Final = 1 << 24
_MAX_INT32: Final = (1 << 31) - 1

# Level 6: {level 6, good 8, lazy 16, nice 128, chain 128, never skip hashing}.
_GOOD_LENGTH: Final = 8
_LAZY_LENGTH: Final = 16
_NICE_LENGTH: Final = 128
_MAX_CHAIN: Final = 128

# Chain entries findMatch examines.  The search always starts from length 3
# (minMatchLength - 1) and Go quarters the budget only when that starting
# length is >= good, so level 6 walks up to the full 128 entries.
_CHAIN_TRIES: Final = range(
    _MAX_CHAIN >> 2 if _MIN_MATCH_LENGTH - 1 >= _GOOD_LENGTH else _MAX_CHAIN
)

# A 4-byte match is only worth it when it is close by.
_SHORT_MATCH_MAX_DISTANCE: Final = 4096

# ---------------------------------------------------------------------------
# Tokens: a literal byte (or 256, the end-of-block marker) is its own value;
# a match is _MATCH_TYPE | (length - 3) << 22 | (distance - 1), as in token.go.
# ---------------------------------------------------------------------------

_MATCH_TYPE: Final = 1 << 30
_LENGTH_SHIFT: Final = 22
_OFFSET_MASK: Final = (1 << _LENGTH_SHIFT) - 1
_END_BLOCK: Final = 256

_NUM_LITERAL_CODES: Final = 286  # literal/length alphabet Go sizes its tables to
_NUM_OFFSET_CODES: Final = 30
_NUM_CODEGEN_CODES: Final = 19
_LENGTH_CODES_START: Final = 257

# Extra bits and base value (length - 3) of each of the 29 length codes.
_LENGTH_EXTRA_BITS: Final[Sequence[int]] = (
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2,
    3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
)
_LENGTH_BASE: Final[Sequence[int]] = (
    0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28,
    32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 255,
)
# Extra bits and base value (distance - 1) of each of the 30 distance codes.
_OFFSET_EXTRA_BITS: Final[Sequence[int]] = (
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6,
    7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13,
)
_OFFSET_BASE: Final[Sequence[int]] = (
    0x0000, 0x0001, 0x0002, 0x0003, 0x0004, 0x0006, 0x0008, 0x000C,
    0x0010, 0x0018, 0x0020, 0x0030, 0x0040, 0x0060, 0x0080, 0x00C0,
    0x0100, 0x0180, 0x0200, 0x0300, 0x0400, 0x0600, 0x0800, 0x0C00,
    0x1000, 0x1800, 0x2000, 0x3000, 0x4000, 0x6000,
)

# Order in which the code-length code lengths are sent (RFC 1951, 3.2.7).
_CODEGEN_ORDER: Final[Sequence[int]] = (
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
)
# Code-length symbols 16, 17 and 18 carry 2, 3 and 7 extra bits.
_CODEGEN_EXTRA_BITS: Final[dict[int, int]] = {16: 2, 17: 3, 18: 7}
_CODEGEN_END: Final = 255  # Go's "badCode" sentinel


def _code_table(bases: Sequence[int], size: int) -> list[int]:
    """Map every value below ``size`` to the last code whose base is <= it."""
    table: list[int] = []
    code = 0
    for value in range(size):
        while code + 1 < len(bases) and bases[code + 1] <= value:
            code += 1
        table.append(code)
    return table


# length - 3 (0..255) -> length code (0..28); distance - 1 -> distance code.
_LENGTH_CODE: Final[list[int]] = _code_table(_LENGTH_BASE, 256)
_OFFSET_CODE: Final[list[int]] = _code_table(_OFFSET_BASE, _WINDOW_SIZE)


def _reverse_bits(value: int, width: int) -> int:
    """Reverse the low ``width`` bits of ``value`` (deflate sends codes LSB first)."""
    result = 0
    for _ in range(width):
        result = (result << 1) | (value & 1)
        value >>= 1
    return result


# ---------------------------------------------------------------------------
# Huffman code construction (huffman_code.go).
# ---------------------------------------------------------------------------


def _bit_counts(freqs: Sequence[int], max_bits: int) -> list[int]:
    """Return how many symbols get each code length, limited to ``max_bits``.

    ``freqs`` are the non-zero frequencies in ascending (frequency, symbol)
    order; there are at least three.  This follows Go's ``bitCounts``, a
    boundary package-merge walk, so the counts (and hence the lengths) match
    Go's whenever several optimal length-limited codes exist.  Element ``i``
    of the result is the number of symbols coded with ``i`` bits.
    """
    n = len(freqs)
    inf = _MAX_INT32
    leaf = list(freqs) + [inf]  # sentinel after the last leaf
    if max_bits > n - 1:
        max_bits = n - 1

    # Per level state: frequency of the last node chosen, of the next leaf,
    # of the next pair from the level below, and how many nodes are still needed.
    levels = max_bits + 2
    last_freq = [0] * levels
    next_char_freq = [0] * levels
    next_pair_freq = [0] * levels
    needed = [0] * levels
    # leaf_counts[level][j]: leaves left of the level-j ancestor of the
    # rightmost node at ``level``.
    leaf_counts = [[0] * levels for _ in range(levels)]

    for level in range(1, max_bits + 1):
        last_freq[level] = leaf[1]
        next_char_freq[level] = leaf[2]
        next_pair_freq[level] = leaf[0] + leaf[1] if level > 1 else inf
        leaf_counts[level][level] = 2

    # 2n - 2 nodes are needed at the top level; two are already there.
    needed[max_bits] = 2 * n - 4
    level = max_bits
    while True:
        if next_pair_freq[level] == inf and next_char_freq[level] == inf:
            # Out of leaves and pairs: this level is finished for good.
            needed[level] = 0
            next_pair_freq[level + 1] = inf
            level += 1
            continue

        prev_freq = last_freq[level]
        if next_char_freq[level] < next_pair_freq[level]:
            # Next node on this level is a leaf.
            count = leaf_counts[level][level] + 1
            last_freq[level] = next_char_freq[level]
            leaf_counts[level][level] = count
            next_char_freq[level] = leaf[count]
        else:
            # Next node is a pair from the level below, which must refill.
            last_freq[level] = next_pair_freq[level]
            leaf_counts[level][:level] = leaf_counts[level - 1][:level]
            needed[level - 1] = 2

        needed[level] -= 1
        if needed[level] == 0:
            if level == max_bits:
                break
            next_pair_freq[level + 1] = prev_freq + last_freq[level]
            level += 1
        else:
            while needed[level - 1] > 0:
                level -= 1

    counts = leaf_counts[max_bits]
    if counts[max_bits] != n:
        raise AssertionError("huffman: not every leaf was placed")
    bit_count = [0] * (max_bits + 1)
    bits = 1
    for level in range(max_bits, 0, -1):
        bit_count[bits] = counts[level] - counts[level - 1]
        bits += 1
    return bit_count


class _HuffmanEncoder:
    """Code and length per symbol, as Go's ``huffmanEncoder``."""

    __slots__ = ("codes", "lengths")

    def __init__(self, size: int) -> None:
        self.codes: list[int] = [0] * size  # bit-reversed, ready to send
        self.lengths: list[int] = [0] * size  # 0 for unused symbols

    def bit_length(self, freq: Sequence[int]) -> int:
        """Total bits needed to send symbols with the given frequencies."""
        lengths = self.lengths
        return sum(f * lengths[i] for i, f in enumerate(freq) if f)

    def generate(self, freq: Sequence[int], max_bits: int) -> None:
        """Build the length-limited code Go would build for ``freq``."""
        codes, lengths = self.codes, self.lengths
        used: list[tuple[int, int]] = []  # (frequency, symbol)
        for symbol, f in enumerate(freq):
            if f:
                used.append((f, symbol))
            else:
                lengths[symbol] = 0
        if len(used) <= 2:
            # One or two symbols: each gets a one-bit code, in symbol order.
            for code, (_, symbol) in enumerate(used):
                codes[symbol] = code
                lengths[symbol] = 1
            return

        used.sort()  # ascending frequency, ties by symbol
        bit_count = _bit_counts([f for f, _ in used], max_bits)

        # Canonical assignment: the most frequent symbols take the shortest
        # codes; within one length, codes rise with the symbol value.
        remaining = [symbol for _, symbol in used]
        code = 0
        for bits, count in enumerate(bit_count):
            code = (code << 1) & 0xFFFF
            if bits == 0 or count == 0:
                continue
            chunk = sorted(remaining[len(remaining) - count:])
            for symbol in chunk:
                codes[symbol] = _reverse_bits(code, bits)
                lengths[symbol] = bits
                code += 1
            del remaining[len(remaining) - count:]


def _fixed_literal_encoder() -> _HuffmanEncoder:
    """The fixed literal/length code of RFC 1951, 3.2.6."""
    enc = _HuffmanEncoder(_NUM_LITERAL_CODES)
    for symbol in range(_NUM_LITERAL_CODES):
        if symbol < 144:
            code, bits = symbol + 0x30, 8
        elif symbol < 256:
            code, bits = symbol - 144 + 0x190, 9
        elif symbol < 280:
            code, bits = symbol - 256, 7
        else:
            code, bits = symbol - 280 + 0xC0, 8
        enc.codes[symbol] = _reverse_bits(code, bits)
        enc.lengths[symbol] = bits
    return enc


def _fixed_offset_encoder() -> _HuffmanEncoder:
    """The fixed distance code: five bits each."""
    enc = _HuffmanEncoder(_NUM_OFFSET_CODES)
    for symbol in range(_NUM_OFFSET_CODES):
        enc.codes[symbol] = _reverse_bits(symbol, 5)
        enc.lengths[symbol] = 5
    return enc


_FIXED_LITERALS: Final = _fixed_literal_encoder()
_FIXED_OFFSETS: Final = _fixed_offset_encoder()


# ---------------------------------------------------------------------------
# Block writer (huffman_bit_writer.go).
# ---------------------------------------------------------------------------


class _BlockWriter:
    """Writes deflate blocks, choosing the encoding as Go's ``writeBlock`` does."""

    def __init__(self) -> None:
        self.out = bytearray()
        self._bits = 0  # pending bits, least significant first
        self._nbits = 0
        self._literals = _HuffmanEncoder(_NUM_LITERAL_CODES)
        self._offsets = _HuffmanEncoder(_NUM_OFFSET_CODES)
        self._codegen_encoder = _HuffmanEncoder(_NUM_CODEGEN_CODES)

    # -- bit output ---------------------------------------------------------

    def _write_bits(self, value: int, nbits: int) -> None:
        self._bits |= value << self._nbits
        self._nbits += nbits
        if self._nbits >= 64:
            self.out += (self._bits & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little")
            self._bits >>= 64
            self._nbits -= 64

    def flush(self) -> None:
        """Emit pending bits, zero-padding to a whole byte."""
        nbytes = (self._nbits + 7) >> 3
        self.out += self._bits.to_bytes(nbytes, "little") if nbytes else b""
        self._bits = 0
        self._nbits = 0

    def write_stored_header(self, length: int, final: bool) -> None:
        """Stored block header: BFINAL, BTYPE 00, pad, LEN, NLEN."""
        self._write_bits(1 if final else 0, 3)
        self.flush()
        self._write_bits(length, 16)
        self._write_bits(length ^ 0xFFFF, 16)

    def _write_stored(self, data: bytes | bytearray) -> None:
        self.write_stored_header(len(data), False)
        self.flush()  # header ends on a byte boundary: just emits its 4 bytes
        self.out += data

    # -- block encoding -----------------------------------------------------

    def write_block(self, tokens: list[int], window: Optional[bytes]) -> None:
        """Write one non-final block of ``tokens`` in its cheapest form.

        ``window`` holds the block's original bytes when they are still
        available (Go passes nil otherwise), allowing a stored block.
        """
        tokens.append(_END_BLOCK)
        lit_freq, off_freq, num_literals, num_offsets = self._index_tokens(tokens)

        storable = window is not None and len(window) <= _MAX_STORED_BLOCK
        stored_size = (len(window) + 5) * 8 if window is not None and storable else 0
        extra_bits = 0
        if storable:
            # Length/distance extra bits cost the same in fixed and dynamic
            # blocks; Go only counts them when comparing against stored.
            for code in range(_LENGTH_CODES_START + 8, num_literals):
                extra_bits += lit_freq[code] * _LENGTH_EXTRA_BITS[code - _LENGTH_CODES_START]
            for code in range(4, num_offsets):
                extra_bits += off_freq[code] * _OFFSET_EXTRA_BITS[code]

        fixed_size = (
            3
            + _FIXED_LITERALS.bit_length(lit_freq)
            + _FIXED_OFFSETS.bit_length(off_freq)
            + extra_bits
        )
        codegen, codegen_freq = self._generate_codegen(num_literals, num_offsets)
        self._codegen_encoder.generate(codegen_freq, 7)
        dynamic_size, num_codegens = self._dynamic_size(lit_freq, off_freq, codegen_freq, extra_bits)

        dynamic = dynamic_size < fixed_size
        size = dynamic_size if dynamic else fixed_size
        if storable and stored_size < size:
            assert window is not None
            self._write_stored(window)
            return
        if dynamic:
            self._write_dynamic_header(num_literals, num_offsets, num_codegens, codegen)
            self._write_tokens(tokens, self._literals, self._offsets)
        else:
            self._write_bits(2, 3)  # BFINAL 0, BTYPE 01 (fixed)
            self._write_tokens(tokens, _FIXED_LITERALS, _FIXED_OFFSETS)

    def _index_tokens(self, tokens: list[int]) -> tuple[list[int], list[int], int, int]:
        """Count symbol frequencies and build both dynamic codes for them."""
        lit_freq = [0] * _NUM_LITERAL_CODES
        off_freq = [0] * _NUM_OFFSET_CODES
        for token, count in Counter(tokens).items():
            if token < _MATCH_TYPE:
                lit_freq[token] += count
            else:
                xlength = (token - _MATCH_TYPE) >> _LENGTH_SHIFT
                lit_freq[_LENGTH_CODES_START + _LENGTH_CODE[xlength]] += count
                off_freq[_OFFSET_CODE[token & _OFFSET_MASK]] += count

        num_literals = _NUM_LITERAL_CODES
        while lit_freq[num_literals - 1] == 0:
            num_literals -= 1
        num_offsets = _NUM_OFFSET_CODES
        while num_offsets > 0 and off_freq[num_offsets - 1] == 0:
            num_offsets -= 1
        if num_offsets == 0:
            # No match: Go still counts one distance code so that a dynamic
            # header can describe a (one-code) distance tree.  The phantom
            # count also takes part in the size estimates below.
            off_freq[0] = 1
            num_offsets = 1

        self._literals.generate(lit_freq, 15)
        self._offsets.generate(off_freq, 15)
        return lit_freq, off_freq, num_literals, num_offsets

    def _generate_codegen(
        self, num_literals: int, num_offsets: int
    ) -> tuple[list[tuple[int, int]], list[int]]:
        """Run-length encode the code lengths as Go's ``generateCodegen`` does.

        Returns (symbol, extra-bits value) pairs and the symbol frequencies.
        """
        sizes = self._literals.lengths[:num_literals] + self._offsets.lengths[:num_offsets]
        sizes.append(_CODEGEN_END)
        freq = [0] * _NUM_CODEGEN_CODES
        out: list[tuple[int, int]] = []

        size = sizes[0]
        count = 1
        position = 1
        while size != _CODEGEN_END:
            next_size = sizes[position]
            position += 1
            if next_size == size:
                count += 1
                continue
            if size != 0:
                # The length once, then repeats of it in runs of 3..6.
                out.append((size, 0))
                freq[size] += 1
                count -= 1
                while count >= 3:
                    run = min(count, 6)
                    out.append((16, run - 3))
                    freq[16] += 1
                    count -= run
            else:
                # Zero runs: 11..138 with symbol 18, then 3..10 with 17.
                while count >= 11:
                    run = min(count, 138)
                    out.append((18, run - 11))
                    freq[18] += 1
                    count -= run
                if count >= 3:
                    out.append((17, count - 3))
                    freq[17] += 1
                    count = 0
            for _ in range(count):  # leftovers are sent one by one
                out.append((size, 0))
                freq[size] += 1
            size = next_size
            count = 1
        return out, freq

    def _dynamic_size(
        self, lit_freq: list[int], off_freq: list[int], codegen_freq: list[int], extra_bits: int
    ) -> tuple[int, int]:
        """Bits of a dynamic block (Go's estimate) and the code-length count sent."""
        num_codegens = _NUM_CODEGEN_CODES
        while num_codegens > 4 and codegen_freq[_CODEGEN_ORDER[num_codegens - 1]] == 0:
            num_codegens -= 1
        header = (
            3 + 5 + 5 + 4
            + 3 * num_codegens
            + self._codegen_encoder.bit_length(codegen_freq)
            + codegen_freq[16] * 2
            + codegen_freq[17] * 3
            + codegen_freq[18] * 7
        )
        size = (
            header
            + self._literals.bit_length(lit_freq)
            + self._offsets.bit_length(off_freq)
            + extra_bits
        )
        return size, num_codegens

    def _write_dynamic_header(
        self, num_literals: int, num_offsets: int, num_codegens: int, codegen: list[tuple[int, int]]
    ) -> None:
        self._write_bits(4, 3)  # BFINAL 0, BTYPE 10 (dynamic)
        self._write_bits(num_literals - 257, 5)
        self._write_bits(num_offsets - 1, 5)
        self._write_bits(num_codegens - 4, 4)
        cg = self._codegen_encoder
        for i in range(num_codegens):
            self._write_bits(cg.lengths[_CODEGEN_ORDER[i]], 3)
        for symbol, extra in codegen:
            self._write_bits(cg.codes[symbol], cg.lengths[symbol])
            if symbol >= 16:
                self._write_bits(extra, _CODEGEN_EXTRA_BITS[symbol])

    def _write_tokens(self, tokens: list[int], lit: _HuffmanEncoder, off: _HuffmanEncoder) -> None:
        """Huffman-code the tokens (including the end-of-block marker)."""
        lit_codes, lit_lengths = lit.codes, lit.lengths
        off_codes, off_lengths = off.codes, off.lengths
        length_code, offset_code = _LENGTH_CODE, _OFFSET_CODE
        length_extra, length_base = _LENGTH_EXTRA_BITS, _LENGTH_BASE
        offset_extra, offset_base = _OFFSET_EXTRA_BITS, _OFFSET_BASE
        out = self.out
        bits, nbits = self._bits, self._nbits
        for token in tokens:
            if token < _MATCH_TYPE:
                bits |= lit_codes[token] << nbits
                nbits += lit_lengths[token]
            else:
                xlength = (token - _MATCH_TYPE) >> _LENGTH_SHIFT
                lc = length_code[xlength]
                symbol = lc + _LENGTH_CODES_START
                bits |= lit_codes[symbol] << nbits
                nbits += lit_lengths[symbol]
                extra = length_extra[lc]
                if extra:
                    bits |= (xlength - length_base[lc]) << nbits
                    nbits += extra
                xoffset = token & _OFFSET_MASK
                oc = offset_code[xoffset]
                bits |= off_codes[oc] << nbits
                nbits += off_lengths[oc]
                extra = offset_extra[oc]
                if extra:
                    bits |= (xoffset - offset_base[oc]) << nbits
                    nbits += extra
            if nbits >= 64:
                out += (bits & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little")
                bits >>= 64
                nbits -= 64
        self._bits, self._nbits = bits, nbits


# ---------------------------------------------------------------------------
# The level-6 compressor (deflate.go: fillDeflate, deflate, findMatch).
# ---------------------------------------------------------------------------


def _hashes(buf: bytes | bytearray, start: int, stop: int) -> list[int]:
    """Go's ``hash4`` of ``buf[p:p+4]`` for every ``p`` in ``[start, stop)``."""
    count = stop - start
    if count <= 0:
        return []
    chunk = bytes(buf[start:stop + 3])
    words = [0] * count
    for phase in range(4):
        n = (count - phase + 3) // 4  # positions phase, phase+4, ... below count
        if n > 0:
            words[phase::4] = struct.unpack_from(f">{n}I", chunk, phase)
    return [((w * _HASH_MUL) & 0xFFFFFFFF) >> _HASH_SHIFT for w in words]


def _words(buf: bytes | bytearray, start: int, stop: int) -> list[int]:
    """Little-endian 64-bit value of ``buf[p:p+8]`` for every ``p`` in ``[start, stop)``.

    Comparing two of these finds short match lengths without slicing.
    """
    count = stop - start
    if count <= 0:
        return []
    chunk = bytes(buf[start:stop + 7])
    words = [0] * count
    for phase in range(8):
        n = (count - phase + 7) // 8
        if n > 0:
            words[phase::8] = struct.unpack_from(f"<{n}Q", chunk, phase)
    return words


class _Deflater:
    """State of Go's ``compressor`` at level 6, fed with one ``Write``."""

    def __init__(self) -> None:
        self.writer = _BlockWriter()
        self.window = bytearray(_BUFFER_SIZE)
        self.hashes: list[int] = []  # hash of window[p:p+4], for p < window_end - 3
        self.words: list[int] = []  # window[p:p+8] as an integer, for p <= window_end - 8
        self.index = 0  # next window position to process
        self.window_end = 0
        self.block_start = 0  # window position where the pending tokens start
        self.byte_available = False  # window[index-1] still awaits a decision
        self.tokens: list[int] = []
        self.length = _MIN_MATCH_LENGTH - 1
        self.offset = 0
        # hash_head[h] and hash_prev[p] hold a buffer position plus hash_offset
        # (0 = empty); hash_offset grows by the window size at each slide.
        # Go keeps hash_prev as a 32 KiB ring and stops a chain walk where the
        # ring slot was reused; one slot per buffer position (slid with the
        # buffer) ends every walk at the same place without that check.
        self.chain_head = -1
        self.hash_head = [0] * _HASH_SIZE
        self.hash_prev = [0] * _BUFFER_SIZE
        self.hash_offset = 1

    # -- window management --------------------------------------------------

    def fill(self, data: bytes, start: int) -> int:
        """Slide the window if needed and copy in more input; returns bytes taken."""
        if self.index >= _SLIDE_AT:
            window = self.window
            window[:_WINDOW_SIZE] = window[_WINDOW_SIZE:]
            self.index -= _WINDOW_SIZE
            self.window_end -= _WINDOW_SIZE
            if self.block_start >= _WINDOW_SIZE:
                self.block_start -= _WINDOW_SIZE
            else:
                self.block_start = _MAX_INT32  # block's bytes have left the buffer
            self.hash_prev[:_WINDOW_SIZE] = self.hash_prev[_WINDOW_SIZE:]
            del self.hashes[:_WINDOW_SIZE]
            del self.words[:_WINDOW_SIZE]
            self.hash_offset += _WINDOW_SIZE
            if self.hash_offset > _MAX_HASH_OFFSET:
                self._rebase_hashes()
        n = min(len(data) - start, _BUFFER_SIZE - self.window_end)
        end = self.window_end
        self.window[end:end + n] = data[start:start + n]
        self.window_end = end + n
        self.hashes += _hashes(self.window, len(self.hashes), self.window_end - (_MIN_MATCH_LENGTH - 1))
        self.words += _words(self.window, len(self.words), self.window_end - 7)
        return n

    def _rebase_hashes(self) -> None:
        """Keep stored positions small, as Go does after 16 MiB of input."""
        delta = self.hash_offset - 1
        self.hash_offset -= delta
        self.chain_head -= delta
        self.hash_prev = [v - delta if v > delta else 0 for v in self.hash_prev]
        self.hash_head = [v - delta if v > delta else 0 for v in self.hash_head]

    def _flush_block(self, tokens: list[int], index: int) -> None:
        """Go's ``compressor.writeBlock``: stored form only if bytes are at hand."""
        window: Optional[bytes] = None
        if self.block_start <= index:
            window = bytes(self.window[self.block_start:index])
        self.block_start = index
        self.writer.write_block(tokens, window)

    # -- LZ77 ------------------------------------------------------------------

    def deflate(self, sync: bool) -> None:
        """Tokenize the window; with ``sync`` run to the end and flush a block."""
        window_end = self.window_end
        index = self.index
        if window_end - index < _LOOKAHEAD_NEEDED and not sync:
            return

        window = self.window
        view = memoryview(window)
        hashes = self.hashes
        words = self.words
        num_words = len(words)
        head = self.hash_head
        prev = self.hash_prev
        hash_offset = self.hash_offset
        chain_head = self.chain_head
        length = self.length
        offset = self.offset
        byte_available = self.byte_available
        tokens = self.tokens
        max_insert = window_end - (_MIN_MATCH_LENGTH - 1)
        from_bytes = int.from_bytes

        while True:
            lookahead = window_end - index
            if lookahead < _LOOKAHEAD_NEEDED:
                if not sync:
                    break
                if lookahead == 0:
                    if byte_available:
                        tokens.append(window[index - 1])
                        byte_available = False
                    if tokens:
                        self._flush_block(tokens, index)
                        tokens = []
                    break

            if index < max_insert:
                h = hashes[index]
                chain_head = head[h]
                prev[index] = chain_head
                head[h] = index + hash_offset

            prev_length = length
            prev_offset = offset
            length = _MIN_MATCH_LENGTH - 1
            offset = 0
            min_index = index - _WINDOW_SIZE
            candidate = chain_head - hash_offset

            if (
                candidate >= (min_index if min_index > 0 else 0)
                and lookahead > prev_length
                and prev_length < _LAZY_LENGTH
            ):
                # findMatch(index, candidate, prevLength=3, lookahead).  As the
                # starting length is 3 (< good), the whole chain budget is used.
                max_look = lookahead if lookahead < _MAX_MATCH_LENGTH else _MAX_MATCH_LENGTH
                nice = max_look if max_look < _NICE_LENGTH else _NICE_LENGTH
                # With 8 bytes of lookahead, candidates are first compared as
                # 64-bit words; only 8-byte agreements need the long compare.
                word = words[index] if index < num_words else -1
                here = -1
                best = _MIN_MATCH_LENGTH - 1
                end_byte = window[index + best]
                lowest = min_index if min_index > 0 else 0
                i = candidate
                for _ in _CHAIN_TRIES:
                    if window[i + best] == end_byte:
                        diff = words[i] ^ word if word >= 0 else 0
                        if diff:
                            n = ((diff & -diff).bit_length() - 1) >> 3
                        else:
                            if here < 0:
                                here = from_bytes(view[index:index + max_look], "little")
                            diff = from_bytes(view[i:i + max_look], "little") ^ here
                            n = ((diff & -diff).bit_length() - 1) >> 3 if diff else max_look
                        if n > best and (n > _MIN_MATCH_LENGTH or index - i <= _SHORT_MATCH_MAX_DISTANCE):
                            best = n
                            offset = index - i
                            if n >= nice:
                                break
                            end_byte = window[index + n]
                    # Chains run strictly backwards; stop once out of reach
                    # (or past the start of the buffer).
                    i = prev[i] - hash_offset
                    if i < lowest:
                        break
                length = best

            if prev_length >= _MIN_MATCH_LENGTH and length <= prev_length:
                # The match found one byte earlier is at least as good: emit it.
                tokens.append(
                    _MATCH_TYPE
                    | (prev_length - _BASE_MATCH_LENGTH) << _LENGTH_SHIFT
                    | (prev_offset - _BASE_MATCH_OFFSET)
                )
                new_index = index + prev_length - 1
                for p in range(index + 1, min(new_index, max_insert)):
                    h = hashes[p]
                    prev[p] = head[h]
                    head[h] = p + hash_offset
                index = new_index
                byte_available = False
                length = _MIN_MATCH_LENGTH - 1
                if len(tokens) == _MAX_BLOCK_TOKENS:
                    self._flush_block(tokens, index)
                    tokens = []
            else:
                if byte_available:
                    tokens.append(window[index - 1])
                    if len(tokens) == _MAX_BLOCK_TOKENS:
                        self._flush_block(tokens, index)
                        tokens = []
                index += 1
                byte_available = True

        view.release()
        self.index = index
        self.chain_head = chain_head
        self.length = length
        self.offset = offset
        self.byte_available = byte_available
        self.tokens = tokens


def _deflate_raw(data: bytes) -> bytes:
    """Raw deflate stream as Go's flate.Writer gives for one Write then Close."""
    d = _Deflater()
    position = 0
    while position < len(data):
        d.deflate(sync=False)
        position += d.fill(data, position)
    d.deflate(sync=True)
    # Close: an empty final stored block ends the stream.
    d.writer.write_stored_header(0, True)
    d.writer.flush()
    return bytes(d.writer.out)


# ID1 ID2, CM=8 (deflate), FLG=0, MTIME=0, XFL=0 (level -1), OS=255 (unknown).
_GZIP_HEADER: Final = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


def compress(data: bytes) -> bytes:
    """gzip data exactly as Go's compress/gzip at DefaultCompression writes it (zero header)."""
    data = bytes(data)
    trailer = struct.pack("<II", zlib.crc32(data) & 0xFFFFFFFF, len(data) & 0xFFFFFFFF)
    return _GZIP_HEADER + _deflate_raw(data) + trailer
