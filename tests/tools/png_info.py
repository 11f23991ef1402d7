"""png_info.py FILE: checks that FILE is a well-formed PNG (signature, IHDR first, every chunk's
CRC, IDAT data that inflates to the size IHDR implies, IEND last) and prints
"valid PNG WIDTHxHEIGHT"; otherwise prints what is wrong and exits 1."""
import struct
import sys
import zlib


def main(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        sys.exit(f"{path}: not a PNG (bad signature)")
    pos, chunks, idat = 8, [], b""
    while pos < len(data):
        if pos + 8 > len(data):
            sys.exit(f"{path}: truncated chunk header at byte {pos}")
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        crc = data[pos + 8 + n:pos + 12 + n]
        if len(body) != n or len(crc) != 4:
            sys.exit(f"{path}: truncated {kind!r} chunk")
        if zlib.crc32(kind + body) != struct.unpack(">I", crc)[0]:
            sys.exit(f"{path}: CRC mismatch in {kind!r} chunk")
        chunks.append((kind, body))
        if kind == b"IDAT":
            idat += body
        pos += 12 + n
    if not chunks or chunks[0][0] != b"IHDR" or chunks[-1][0] != b"IEND":
        sys.exit(f"{path}: IHDR must come first and IEND last")
    w, h, depth, color = struct.unpack(">IIBB", chunks[0][1][:10])
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color]
    raw = zlib.decompress(idat)
    if len(raw) != h * (1 + (w * channels * depth + 7) // 8):
        sys.exit(f"{path}: image data is {len(raw)} bytes, not what {w}x{h} needs")
    print(f"valid PNG {w}x{h}")


if __name__ == "__main__":
    main(sys.argv[1])
