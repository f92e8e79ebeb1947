"""acks.py: settling a caller's future never raises into the thread that settles it."""

from concurrent.futures import Future

from streamret.engine.acks import AckThread, reject, resolve


class CancelledWhileChecked(Future):
    """A future the caller cancels between the settling thread's done() check and its set."""

    def done(self) -> bool:
        was = super().done()
        self.cancel()
        return was


def test_a_future_cancelled_between_the_check_and_the_set_is_left_alone():
    for settle, value in ((resolve, 1), (reject, ValueError("x"))):
        fut = CancelledWhileChecked()
        settle(fut, value)  # (set_result / set_exception on a cancelled future raises InvalidStateError)
        assert fut.cancelled()


def test_the_ack_thread_settles_in_order_and_goes_on_past_a_cancelled_future():
    thread = AckThread("test-acks")
    late, first, last = CancelledWhileChecked(), Future(), Future()
    order = []
    first.add_done_callback(lambda f: order.append(f.result()))
    last.add_done_callback(lambda f: order.append(f.result()))
    thread.put([(first, "a"), (late, "b")])
    thread.put([(last, "c")])
    thread.close()
    assert order == ["a", "c"] and late.cancelled()
