-- jobs/lib/systems.lua: where the seed pipeline's jobs find Kafka, the Schema Registry and
-- Elasticsearch, all from the environment, so the same jobs run against the local stand-ins
-- (make demo-pipeline) and against real clusters. A job in jobs/ takes it with
-- `local systems = require("lib.systems")`. (PostgreSQL is secret("PG_URL") in the jobs themselves;
-- the model is OPENAI_BASE_URL and OPENAI_API_KEY.)
--
--   KAFKA_BROKERS          bootstrap servers, host:port[,host:port...]      (default 127.0.0.1:9092)
--   KAFKA_PROPERTIES       more librdkafka properties, name=value separated by ';' or newlines:
--                          "security.protocol=SASL_SSL;sasl.mechanisms=PLAIN;sasl.username=KEY"
--   KAFKA_SASL_PASSWORD    sasl.password, as a secret (or KAFKA_SASL_PASSWORD_FILE)
--   SCHEMA_REGISTRY_URL    the registry                                      (default http://127.0.0.1:8081)
--   SCHEMA_REGISTRY_USER   basic auth user (Confluent Cloud: the API key); then
--   SCHEMA_REGISTRY_PASSWORD  its password, as a secret (Confluent Cloud: the API secret)
--   SCHEMA_REGISTRY_CA_FILE   PEM of a private CA
--   ES_URL                 Elasticsearch                                     (default http://127.0.0.1:9200)
--   ES_API_KEY             Authorization: ApiKey, as a secret; or
--   ES_USER, ES_PASSWORD   basic auth, the password as a secret
--   ES_CA_FILE             PEM of a private CA
local systems = {}

-- set NAME: whether environment variable NAME is set and not empty; secret_set NAME: or NAME_FILE
local function set(name) return env(name, "") ~= "" end
local function secret_set(name) return set(name) or set(name .. "_FILE") end

systems.brokers = env("KAFKA_BROKERS", "127.0.0.1:9092")

local properties = {}
for entry in env("KAFKA_PROPERTIES", ""):gmatch("[^;\n]+") do
  if entry:match("%S") then
    local name, value = entry:match("^%s*([%w._-]+)%s*=%s*(.-)%s*$")
    if not name then error("KAFKA_PROPERTIES: '" .. entry .. "' is not name=value") end
    properties[name] = value
  end
end
if secret_set("KAFKA_SASL_PASSWORD") then properties["sasl.password"] = secret("KAFKA_SASL_PASSWORD") end
systems.kafka_properties = properties

systems.registry = { url = env("SCHEMA_REGISTRY_URL", "http://127.0.0.1:8081") }
if set("SCHEMA_REGISTRY_USER") then
  systems.registry.user = env("SCHEMA_REGISTRY_USER")
  systems.registry.password = secret("SCHEMA_REGISTRY_PASSWORD")
end
if set("SCHEMA_REGISTRY_CA_FILE") then systems.registry.ca_file = env("SCHEMA_REGISTRY_CA_FILE") end

systems.es_url = env("ES_URL", "http://127.0.0.1:9200")
if secret_set("ES_API_KEY") then
  systems.es_auth = { api_key = secret("ES_API_KEY") }
elseif set("ES_USER") then
  systems.es_auth = { user = env("ES_USER"), password = secret("ES_PASSWORD") }
end
if set("ES_CA_FILE") then systems.es_tls = { ca_file = env("ES_CA_FILE") } end

-- A connector's source: the topic product_ratings (--set topic=...) as it is, JSON or, with
-- --set format=avro, Confluent's Avro through the registry; the consumer group is the
-- connector's own (--set group=... overrides it), so each store keeps its own place.
function systems.ratings_source(group)
  local format = param("format", "json")
  return source.kafka { brokers = systems.brokers, properties = systems.kafka_properties,
                        topic = param("topic", "product_ratings"), group = param("group", group),
                        format = format, registry = format == "avro" and systems.registry or nil,
                        metadata = false }
end

return systems
