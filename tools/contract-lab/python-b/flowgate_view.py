"""Candidate B's Python helper: a class per flow whose properties decode strings from the batch's bytes on use."""


class Flow:
    __slots__ = ("_b", "_v")

    def __init__(self, data: bytes, view):
        self._b = data
        self._v = view

    def _s(self, span) -> str:
        return self._b[span.start:span.start + span.len].decode()

    @property
    def source_name(self) -> str:
        return self._s(self._v.source_name)

    @property
    def source_namespace(self) -> str:
        return self._s(self._v.source_namespace)

    @property
    def dest_name(self) -> str:
        return self._s(self._v.dest_name)

    @property
    def dest_namespace(self) -> str:
        return self._s(self._v.dest_namespace)

    @property
    def dest_port(self) -> int:
        return self._v.dest_port

    @property
    def action(self):
        return self._v.action

    @property
    def reporter(self):
        return self._v.reporter


def flows(batch):
    data = batch.bytes
    return (Flow(data, v) for v in batch.flows)
