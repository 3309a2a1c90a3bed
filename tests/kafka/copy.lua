-- tests/kafka/copy.lua: the job the Kafka tests run: topic `in` (JSON) to a JSON Lines file
-- and, with --set out=TOPIC, to a topic keyed by the input key (value: the record with the
-- source's _partition/_offset). Brokers from KAFKA_BROKERS; the sink may use OUT_BROKERS.
local props = {}
local session = param("session_timeout", "")
if session ~= "" then
  props["session.timeout.ms"] = session
  props["heartbeat.interval.ms"] = "300"
end
local sink_props = {}
local msg_timeout = param("message_timeout", "")
if msg_timeout ~= "" then sink_props["message.timeout.ms"] = msg_timeout end

local sinks = { sink.jsonl { path = param("output") } }
local out = param("out", "")
if out ~= "" then
  sinks[#sinks + 1] = sink.kafka { brokers = env("OUT_BROKERS", env("KAFKA_BROKERS")), topic = out, key = "_key",
                                   properties = sink_props }
end
local fail_at = param("fail_at", 0)         -- sink.lua raises at this record (1-based) when > 0
local delay = param("delay_ms", 0) / 1000   -- and spends this long (CPU) on every record
local seen = 0
if fail_at > 0 or delay > 0 then
  sinks[#sinks + 1] = sink.lua { write = function(r)
    seen = seen + 1
    local t = os.clock()
    while os.clock() - t < delay do end
    if seen == fail_at then error("sink failure injected at record " .. seen .. " (offset " .. r._offset .. ")") end
  end }
end

local group = param("group", "")
return job {
  name   = param("name", "kafka_copy"),
  source = source.kafka { brokers = env("KAFKA_BROKERS"), topic = param("in", "in"),
                          group = group ~= "" and group or nil, start = param("start", "committed"),
                          format = param("format", "json"), properties = props },
  checkpoint_interval = param("checkpoint", "5s"),
  limits = { outage = param("outage", "10m") }, -- a sink's brokers down this long stop the job
  sinks  = sinks,
  errors = sink.jsonl { path = param("errors") },
}
