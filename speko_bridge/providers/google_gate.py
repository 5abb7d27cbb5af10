"""The pending-tool-call gate of a Gemini Live session.

Gemini's function calls are declared ``BLOCKING``: after a ``toolCall`` the model waits for
the ``toolResponse``, and any realtime input meanwhile (audio, activity markers, text) makes
the service close the session with 1008. So while a call waits the codec *drops* the user's
input (docs/providers.md says why it drops rather than holds), and the gate always reopens:

- at the call's result (:meth:`ToolCallGate.answer`),
- at Gemini's ``toolCallCancellation`` (:meth:`ToolCallGate.cancel`),
- at the client's ``interrupt``, or after :data:`TOOL_WAIT_MAX_MS` of user audio dropped
  (:meth:`ToolCallGate.abandon`): the last two answer the call with an error
  (``{"error": "..."}``) so the model stops waiting.

A call given up on, or cancelled, is remembered so that a ``tool_result`` that still comes
for it is not forwarded (Gemini no longer expects it). The gate also keeps each call's name:
Gemini's ``functionResponse`` carries it beside the id.

Sans-IO like the codec, and with no clock: the wait is counted in the user audio that
arrives meanwhile, since client audio streams in real time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import msgspec

from ..frames import ToolCall
from .base import CodecEvent
from .google_wire import GEMINI_INPUT_RATE, to_json
from .google_wire import ToolCall as WireToolCall

#: Key under which a non-object tool output is wrapped.
TOOL_OUTPUT_KEY = "output"
#: Call names and given-up ids remembered; a session makes few calls, but the memories are
#: bounded so a runaway upstream cannot grow them.
MAX_REMEMBERED_CALLS = 4096
#: Longest a pending tool call holds the user's input back, counted in the user audio that
#: arrives meanwhile (the codec has no clock; client audio streams in real time). Past it
#: the call is answered with an error so the user is heard again: a tool that takes this
#: long while the user keeps talking is broken, and a session that cannot hear its user is
#: worse than a model told the tool failed.
TOOL_WAIT_MAX_MS = 15_000

_any_decoder = msgspec.json.Decoder()


class ToolCallGate:
    """The calls Gemini waits on (input is dropped while there is one), their names, and
    the ids it no longer expects a result for."""

    __slots__ = ("_seq", "cancelled", "dropped_bytes", "names", "pending")

    def __init__(self) -> None:
        self.names: dict[str, str] = {}  # call id -> function name, for its functionResponse
        self.cancelled: set[str] = set()  # cancelled or given up on: a late result is dropped
        self.pending: set[str] = set()  # calls Gemini waits on: realtime input is held back
        self.dropped_bytes = 0  # client audio dropped while a call is pending
        self._seq = 0

    @property
    def closed(self) -> bool:
        """A call waits for its result: no realtime input may reach Gemini."""
        return bool(self.pending)

    def drop_audio(self, nbytes: int) -> bool:
        """Count user audio dropped while :attr:`closed`; True once :data:`TOOL_WAIT_MAX_MS`
        of it has been dropped (time to :meth:`abandon` the wait)."""
        self.dropped_bytes += nbytes
        return self.dropped_bytes * 1000 >= TOOL_WAIT_MAX_MS * 2 * GEMINI_INPUT_RATE

    def calls(self, call: WireToolCall, out: list[CodecEvent],
              malformed: Callable[[str, list[CodecEvent]], object]) -> bool:
        """Append one :class:`ToolCall` frame per new call id of a ``toolCall`` to ``out`` (a
        call without an ``id`` gets ``call_<n>``; ``args``, an object, passes through as JSON
        text), each closing the gate; True if any was appended. ``malformed`` reports a call
        that cannot be read."""
        emitted = False
        for fc in call.functionCalls or ():
            if not fc.name:
                malformed("functionCall without name", out)
                continue
            call_id = fc.id
            if not call_id:
                self._seq += 1
                call_id = f"call_{self._seq}"
            if call_id in self.names or call_id in self.cancelled:
                continue  # one tool_call per id
            try:
                args = bytes(fc.args).decode()  # the object as sent, no re-encoding
            except UnicodeDecodeError:  # msgspec checks strings, not a Raw's bytes
                malformed("functionCall args are not UTF-8", out)
                continue
            if len(self.names) >= MAX_REMEMBERED_CALLS:
                self.names.clear()
            self.names[call_id] = fc.name
            self.pending.add(call_id)
            self.dropped_bytes = 0
            out.append(ToolCall(call_id, fc.name, args if args.lstrip().startswith("{") else "{}"))
            emitted = True
        return emitted

    def answer(self, call_id: str, output: str) -> str | None:
        """The ``toolResponse`` for a client's result (an ``output`` that is a JSON object goes
        as the ``response``, anything else as ``{"output": <text>}``); None for a call Gemini
        no longer expects."""
        if call_id in self.cancelled:
            return None
        self.pending.discard(call_id)
        try:
            value = _any_decoder.decode(output)
        except (msgspec.DecodeError, RecursionError):  # not JSON, or nested too deep to read
            value = None
        response = value if isinstance(value, dict) else {TOOL_OUTPUT_KEY: output}
        reply = {"id": call_id, "name": self.names.get(call_id, ""), "response": response}
        return to_json({"toolResponse": {"functionResponses": [reply]}})

    def cancel(self, ids: Iterable[str]) -> None:
        """``toolCallCancellation`` (after an interruption): Gemini waits on these no more."""
        ids = set(ids)
        self.pending -= ids
        self._forget(ids)

    def abandon(self, reason: str) -> tuple[str, int]:
        """Answer every pending call with an error so Gemini stops waiting and the gate
        reopens; a late result for them is then dropped like a cancelled one. Returns the
        ``toolResponse`` and how many calls it answers."""
        replies = [{"id": call_id, "name": self.names.get(call_id, ""), "response": {"error": reason}}
                   for call_id in sorted(self.pending)]
        self._forget(self.pending)
        self.pending.clear()
        self.dropped_bytes = 0
        return to_json({"toolResponse": {"functionResponses": replies}}), len(replies)

    def _forget(self, ids: Iterable[str]) -> None:
        if len(self.cancelled) >= MAX_REMEMBERED_CALLS:
            self.cancelled.clear()
        for call_id in ids:
            self.names.pop(call_id, None)
            self.cancelled.add(call_id)
