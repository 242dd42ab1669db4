from rock.output import CappedBuffer


def test_small_stream_is_kept_whole():
    buf = CappedBuffer(100)
    for piece in (b"hello ", b"world"):
        buf.feed(piece)
    assert buf.render() == ("hello world", 0)


def test_large_stream_keeps_head_and_tail_and_counts_the_cut():
    buf = CappedBuffer(1000)
    data = bytes(str(i % 10) for i in range(10_000)) if False else "".join(str(i % 10) for i in range(10_000)).encode()
    for i in range(0, len(data), 333):
        buf.feed(data[i:i + 333])
    text, cut = buf.render()
    assert cut == 10_000 - 1000
    assert text.startswith(data[:500].decode()) and text.endswith(data[-500:].decode())
    assert f"[... {cut} bytes of output cut ...]" in text
    assert len(buf.head) + len(buf.tail) <= 3 * 1000


def test_drop_tail_removes_marker():
    buf = CappedBuffer(100)
    buf.feed(b"abc\nMARK 0\n")
    buf.drop_tail(8)
    assert buf.render() == ("abc", 0)
