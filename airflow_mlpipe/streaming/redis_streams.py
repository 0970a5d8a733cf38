"""Redis Streams transport: consumer groups, XAUTOCLAIM recovery, atomic write + XACK.

Results are committed by one Lua script per micro-batch, so for every input event either its result
is written **and** it is acknowledged, or neither (a consumer killed mid-batch leaves its events
pending; another consumer claims them after ``claim_idle_ms``). The script records each written
event id in the hash ``<output_stream>.done``: a redelivered event that already has a result is
acknowledged without writing it again, so the output holds each event id once. A scored event names
its model version; the version's identity (name, fingerprint) is kept once in the hash
``<output_stream>.models`` (version → JSON). The routing epochs
(``<input_stream>.<group_prefix>.routes``, a list) decide which scorer owns an event: the one whose
bucket range holds the event key's bucket in the epoch that was current when the event arrived.
All keys of one stream must live on one Redis node (on a cluster, give them one hash tag).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from airflow_mlpipe.config.streaming import StreamConfig
from airflow_mlpipe.core.deps import require
from airflow_mlpipe.streaming.transport import Committed, Event, Result

_COMPARE = """
local function cmp(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  if am ~= bm then if am < bm then return -1 else return 1 end end
  if as ~= bs then if as < bs then return -1 else return 1 end end
  return 0
end
"""

# KEYS: input, output, dead letters, done hash, routes.
# ARGV: group, owner, maxlen ('' = none), the first and the last position of the events of kind 3
# ('' when none), number of common fields, common field, value, …, then per event: position, event id, bucket, kind (0 result, 1 dead letter, 2 skipped as not owned, 3 result
# with the input's data), number of fields, field, value, … A record is event_id, input_position, the
# event's fields, for kind 3 the input entry's ``data`` (read here: the largest field of a record is
# not sent back to the server), then the common fields.
_COMMIT = (
    _COMPARE
    + """
local epochs = {}
for _, raw in ipairs(redis.call('LRANGE', KEYS[5], 0, -1)) do table.insert(epochs, cjson.decode(raw)) end
local function owns(pos, b)
  if #epochs == 0 then return true end
  for i = #epochs, 1, -1 do
    local e = epochs[i]
    if cmp(pos, e['after']) > 0 then
      local r = e['owners'][ARGV[2]]
      return r ~= nil and b >= r[1] and b < r[2]
    end
  end
  return false
end
local ncommon = 2 * tonumber(ARGV[6])
local written, dead, dups, others = 0, 0, 0, 0
local owned, ack, done = {}, {}, {}
-- Which event ids already have a result: one HMGET per 500 ids rather than one HSETNX per event;
-- an id written by this batch is marked as it is written (an id twice in one batch).
local ids = {}
local i = 7 + ncommon
while i <= #ARGV do
  table.insert(ids, ARGV[i + 1])
  i = i + 5 + 2 * tonumber(ARGV[i + 4])
end
local had = {}
for s = 1, #ids, 500 do
  local found = redis.call('HMGET', KEYS[4], unpack(ids, s, math.min(s + 499, #ids)))
  for k = 1, #found do if found[k] then had[ids[s + k - 1]] = true end end
end
local function data_of(f)
  for k = 1, #f, 2 do if f[k] == 'data' then return f[k + 1] end end
  return nil
end
-- The inputs' data in one XRANGE from the first to the last position with data (ARGV[4], ARGV[5]):
-- one consumer's batch is mostly a run of consecutive entries; when other consumers' entries
-- interleave, at most 4 entries per event are read and the rest are fetched one by one.
local inputs = {}
if ARGV[4] ~= '' then
  for _, entry in ipairs(redis.call('XRANGE', KEYS[1], ARGV[4], ARGV[5], 'COUNT', 4 * #ids)) do
    inputs[entry[1]] = data_of(entry[2])
  end
end
local function input_data(pos)
  local data = inputs[pos]
  if data == nil then
    local entry = redis.call('XRANGE', KEYS[1], pos, pos)[1]
    if entry then data = data_of(entry[2]) end
  end
  return data
end
i = 7 + ncommon
while i <= #ARGV do
  local pos, eid, b, kind, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3], 2 * tonumber(ARGV[i + 4])
  local first = i + 5
  i = first + n
  if not owns(pos, b) then
    others = others + 1
    table.insert(ack, pos)
  elseif kind == '2' then
    -- skipped on a stale view of the routes: leave it pending, it is read (claimed) again
  elseif had[eid] then
    dups = dups + 1
    table.insert(ack, pos)
  else
    had[eid] = true
    table.insert(done, eid)
    table.insert(done, ARGV[2])
    local target = KEYS[2]
    if kind == '1' then target = KEYS[3]; dead = dead + 1 else written = written + 1 end
    local record = {'event_id', eid, 'input_position', pos, unpack(ARGV, first, i - 1)}
    if kind == '3' then
      local data = input_data(pos)
      if data then
        record[#record + 1] = 'data'
        record[#record + 1] = data
      end
    end
    for j = 7, 6 + ncommon do record[#record + 1] = ARGV[j] end
    redis.call('XADD', target, '*', unpack(record))
    table.insert(owned, pos)
    table.insert(ack, pos)
  end
end
for s = 1, #done, 1000 do
  redis.call('HSET', KEYS[4], unpack(done, s, math.min(s + 999, #done)))
end
if ARGV[3] ~= '' then  -- the cap, once per batch and stream written
  if written > 0 then redis.call('XTRIM', KEYS[2], 'MAXLEN', '~', ARGV[3]) end
  if dead > 0 then redis.call('XTRIM', KEYS[3], 'MAXLEN', '~', ARGV[3]) end
end
for s = 1, #ack, 500 do
  redis.call('XACK', KEYS[1], ARGV[1], unpack(ack, s, math.min(s + 499, #ack)))
end
local out = {written, dead, dups, others}
for _, p in ipairs(owned) do table.insert(out, p) end
return out
"""
)

# KEYS: input, routes. ARGV: owners (JSON). Returns the position after which the epoch applies.
_ROUTE = """
local last = '0-0'
-- The first epoch covers the whole stream, events that arrived before the first scorer included.
if redis.call('LLEN', KEYS[2]) > 0 and redis.call('EXISTS', KEYS[1]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for k = 1, #info, 2 do if info[k] == 'last-generated-id' then last = info[k + 1] end end
end
redis.call('RPUSH', KEYS[2], cjson.encode({after = last, owners = cjson.decode(ARGV[1])}))
return last
"""


def _event(position: str, fields: dict[str, str]) -> Event:
    # A Redis entry id starts with the server's clock in milliseconds when the entry was added.
    return Event(position, dict(fields), arrived_ms=float(position.split("-", 1)[0]))


def position_key(position: str) -> tuple[int, int]:
    """A Redis entry id as a sortable pair."""
    ms, _, seq = position.partition("-")
    return int(ms), int(seq or 0)


class RedisStreamTransport:
    """:class:`~airflow_mlpipe.streaming.transport.StreamTransport` on Redis Streams.

    :param config: the stream's configuration (Redis URL, stream names).
    :param client: an existing ``redis.Redis`` (``decode_responses=True``) instead of one from the URL.
    """

    def __init__(self, config: StreamConfig, client: Any = None) -> None:
        self.config = config
        if client is None:
            redis = require("redis")
            client = redis.Redis.from_url(config.redis_url, decode_responses=True)
        self.client = client
        self.done_key = f"{config.output_stream}.done"
        self.models_key = f"{config.output_stream}.models"
        self.routes_key = f"{config.input_stream}.{config.group_prefix}.routes"
        self._commit = client.register_script(_COMMIT)
        self._route = client.register_script(_ROUTE)
        self._backlog_read: set[tuple[str, str]] = set()
        self._claim_cursor: dict[str, str] = {}
        #: routing epochs and the newest position they are known to cover
        self._routes: tuple[list[dict[str, Any]], tuple[int, int]] | None = None

    # -- consuming ---------------------------------------------------------------------------------
    def ensure_group(self, group: str, start: str) -> None:
        redis = require("redis")
        try:
            self.client.xgroup_create(self.config.input_stream, group, id=start, mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, group: str, consumer: str, count: int, block_ms: int) -> list[Event]:
        stream = self.config.input_stream
        if (group, consumer) not in self._backlog_read:
            # After a restart under the same name, its own unacknowledged events come first.
            events = self._read_events(
                group, lambda pipe: pipe.xreadgroup(group, consumer, {stream: "0"}, count=count)
            )
            if events:
                return events
            self._backlog_read.add((group, consumer))
        return self._read_events(
            group,
            lambda pipe: pipe.xreadgroup(
                group, consumer, {stream: ">"}, count=count, block=block_ms if block_ms > 0 else None
            ),
        )

    def claim_stale(self, group: str, consumer: str, min_idle_ms: int, count: int) -> list[Event]:
        stream = self.config.input_stream

        def claim(pipe: Any) -> None:
            start = self._claim_cursor.get(group, "0-0")
            pipe.xautoclaim(stream, group, consumer, min_idle_time=min_idle_ms, start_id=start, count=count)

        return self._read_events(group, claim, claimed=True)

    def _read_events(
        self, group: str, command: Callable[[Any], Any], *, claimed: bool = False
    ) -> list[Event]:
        """The events of one read ``command`` (XREADGROUP or XAUTOCLAIM), with the routing epochs
        read right after it in the same round trip: every epoch that applies to an event it returned
        is among them (an epoch appended later applies only to events after it), so :meth:`owned`
        needs no request of its own for these events."""
        pipe = self.client.pipeline(transaction=False)
        command(pipe)
        pipe.lrange(self.routes_key, 0, -1)
        reply, raw = pipe.execute()
        return self._events(group, reply, raw, claimed=claimed)

    def _events(self, group: str, reply: Any, raw: list[str], *, claimed: bool = False) -> list[Event]:
        """The events of a read's ``reply``; ``raw``: the routing epochs read right after it."""
        if claimed:  # XAUTOCLAIM: the next cursor, the entries, the ids trimmed meanwhile
            self._claim_cursor[group] = reply[0]
            reply = [(self.config.input_stream, reply[1])]
        events, gone = [], []
        for _stream, entries in reply or []:
            for pos, fields in entries:
                if fields is None:  # trimmed from the input stream while pending: nothing to score
                    gone.append(pos)
                else:
                    events.append(_event(pos, fields))
        if gone:
            self.client.xack(self.config.input_stream, group, *gone)
        self._remember_routes(raw, events)
        return events

    def _remember_routes(self, raw: list[str], events: list[Event]) -> None:
        """Keep epochs read after ``events`` arrived: they hold every epoch of events up to the newest."""
        bound = max((position_key(e.position) for e in events), default=(0, 0))
        if self._routes is not None:
            bound = max(bound, self._routes[1])
        self._routes = ([json.loads(r) for r in raw], bound)

    # -- committing --------------------------------------------------------------------------------
    def commit(
        self,
        group: str,
        owner: str,
        results: list[Result],
        common: dict[str, str] | None = None,
    ) -> Committed:
        return self.send_commit(group, owner, results, common)()

    def send_commit(
        self,
        group: str,
        owner: str,
        results: list[Result],
        common: dict[str, str] | None = None,
    ) -> Callable[[], Committed]:
        """Send the commit of ``results`` on a connection of its own and return without waiting;
        calling the returned function waits for the outcome. Redis runs the script while the caller
        scores the next micro-batch (one thread: the wait is a socket read, not a second thread
        contending for the interpreter)."""
        if not results:
            return Committed
        common = common or {}
        with_data = [
            position_key(r.event.position) for r in results if r.with_data and not (r.dead or r.skipped)
        ]
        span = ["{}-{}".format(*min(with_data)), "{}-{}".format(*max(with_data))] if with_data else ["", ""]
        argv: list[Any] = [group, owner, "" if self.config.max_len is None else self.config.max_len]
        argv += (*span, len(common))
        for kv in common.items():
            argv += kv
        for r in results:
            event = r.event
            kind = 2 if r.skipped else 1 if r.dead else 3 if r.with_data else 0
            argv += (event.position, event.event_id, event.bucket, kind, len(r.fields))
            for kv in r.fields.items():
                argv += kv
        keys = [
            self.config.input_stream,
            self.config.output_stream,
            self.config.dead_letter_stream,
            self.done_key,
            self.routes_key,
        ]
        pool = self.client.connection_pool
        conn = pool.get_connection()
        try:
            conn.send_command("EVALSHA", self._commit.sha, len(keys), *keys, *argv)
        except BaseException:
            conn.disconnect()
            pool.release(conn)
            raise

        def outcome() -> Committed:
            redis = require("redis")
            try:
                reply = conn.read_response()
            except redis.exceptions.NoScriptError:  # not loaded yet, or the server lost it
                pool.release(conn)
                reply = self._commit(keys=keys, args=argv)
            except BaseException:
                conn.disconnect()  # the reply may still be on its way: never reuse the connection
                pool.release(conn)
                raise
            else:
                pool.release(conn)
            written, dead, dups, others = (int(x) for x in reply[:4])
            if written + dead + dups + others < len(results):
                self._routes = None  # a skip was wrong (stale routes): read them again
            return Committed(written, dead, dups, others, [str(p) for p in reply[4:]])

        return outcome

    def describe_model(self, identity: dict[str, str]) -> None:
        self.client.hset(self.models_key, identity["model_version"], json.dumps(identity, sort_keys=True))

    def models(self) -> dict[str, dict[str, str]]:
        """The identity of each model version that wrote to the output stream, by version."""
        return {v: json.loads(raw) for v, raw in self.client.hgetall(self.models_key).items()}

    def owned(self, owner: str, events: list[Event]) -> list[bool]:
        newest = max((position_key(e.position) for e in events), default=(0, 0))
        if self._routes is None or newest > self._routes[1]:
            # Epochs and the stream's last id read together: every event up to that id has its
            # epoch among these (a later epoch only covers events after it was appended).
            pipe = self.client.pipeline(transaction=True)
            pipe.lrange(self.routes_key, 0, -1)
            pipe.xinfo_stream(self.config.input_stream)
            raw, info = pipe.execute()
            self._routes = ([json.loads(r) for r in raw], position_key(str(info["last-generated-id"])))
        epochs, last = self._routes
        if not epochs:
            return [True] * len(events)
        out = []
        for e in events:
            pos = position_key(e.position)
            if pos > last:
                out.append(True)
                continue
            # The same rule as the commit script's owns().
            covering = [x for x in epochs if pos > position_key(x["after"])]
            span = covering[-1]["owners"].get(owner) if covering else None
            out.append(span is not None and span[0] <= e.bucket < span[1])
        return out

    # -- routing and state -------------------------------------------------------------------------
    def set_route(self, owners: dict[str, tuple[int, int]]) -> str:
        body = json.dumps({name: [int(lo), int(hi)] for name, (lo, hi) in owners.items()})
        return str(self._route(keys=[self.config.input_stream, self.routes_key], args=[body]))

    def routes(self) -> list[dict[str, Any]]:
        """The routing epochs, oldest first."""
        return [json.loads(raw) for raw in self.client.lrange(self.routes_key, 0, -1)]

    def group_state(self, group: str) -> dict[str, Any]:
        for info in self.client.xinfo_groups(self.config.input_stream):
            if info["name"] == group:
                return {
                    "lag": int(info.get("lag") or 0),
                    "pending": int(info.get("pending") or 0),
                    "last_delivered": str(info.get("last-delivered-id")),
                    "consumers": int(info.get("consumers") or 0),
                }
        return {"lag": None, "pending": None, "last_delivered": None, "consumers": 0}

    def drained(self, group: str, upto: str) -> bool:
        state = self.group_state(group)
        if state["last_delivered"] is None:
            return False
        if position_key(state["last_delivered"]) < position_key(upto):
            return False
        return not self.client.xpending_range(self.config.input_stream, group, min="-", max=upto, count=1)

    def remove_group(self, group: str) -> None:
        self.client.xgroup_destroy(self.config.input_stream, group)

    def start_position(self, group: str) -> str:
        """Where a new group must start to see everything ``group`` has not finished: before its
        oldest pending event, else at its last delivered one."""
        pending = self.client.xpending_range(self.config.input_stream, group, min="-", max="+", count=1)
        if pending:
            ms, seq = position_key(str(pending[0]["message_id"]))
            return f"{ms}-{seq - 1}" if seq else f"{ms - 1}-{2**63 - 1}"
        state = self.group_state(group)
        return state["last_delivered"] or "0"
