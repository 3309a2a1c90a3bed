#!/usr/bin/env bash
# The metrics registry's Prometheus text exposition, read by an independent parser: Debian's
# python3-prometheus-client (its text_string_to_metric_families), so runnel's writer and the
# reader cannot agree on a mistake. The sample registry is the one test_metrics checks byte
# for byte.
. "$(dirname "$0")/../lib.sh"
PY=/usr/bin/python3
check "python3-prometheus-client is installed (make deps)" $PY -c "import prometheus_client"
check "the unit test prints its sample exposition" sh -c "build/unit/test_metrics --exposition > '$T/metrics.txt'"
cat > "$T/read.py" <<'PY'
import json, math, sys
from prometheus_client.parser import text_string_to_metric_families
seen = {}
for family in text_string_to_metric_families(open(sys.argv[1]).read()):
    for s in family.samples:
        labels = json.dumps(s.labels, sort_keys=True)
        value = "nan" if math.isnan(s.value) else repr(s.value)
        print(f"{family.type} {family.name} {s.name} {labels} {value}")
    print(f"help {family.name} {family.documentation!r}")
PY
check "the parser reads every line" sh -c "$PY '$T/read.py' '$T/metrics.txt' > '$T/parsed.txt'"
cat "$T/parsed.txt"
expect_contains "counter" "$T/parsed.txt" 'counter runnel_records_read runnel_records_read_total {"job": "product_ratings"} 1000.0'
expect_contains "counter with labels" "$T/parsed.txt" \
  'counter runnel_sink_records runnel_sink_records_total {"declared": "job.lua:20", "job": "product_ratings", "sink": "jsonl"} 990.0'
expect_contains "escaped label value read back" "$T/parsed.txt" \
  'runnel_sink_records_total {"declared": "say \"hi\"\\\n", "job": "product_ratings", "sink": "lua"} 7.0'
expect_contains "escaped help read back" "$T/parsed.txt" "help runnel_sink_records 'Records a sink acknowledged.\\nSecond line \\\\ here.'"
expect_contains "gauge" "$T/parsed.txt" 'gauge runnel_in_flight runnel_in_flight {"job": "product_ratings"} -2.5'
expect_contains "histogram bucket le=1" "$T/parsed.txt" \
  'histogram runnel_checkpoint_seconds runnel_checkpoint_seconds_bucket {"job": "product_ratings", "le": "1"} 3.0'
expect_contains "histogram +Inf bucket" "$T/parsed.txt" 'runnel_checkpoint_seconds_bucket {"job": "product_ratings", "le": "+Inf"} 4.0'
expect_contains "histogram sum" "$T/parsed.txt" 'runnel_checkpoint_seconds_sum {"job": "product_ratings"} 30.506'
expect_contains "histogram count" "$T/parsed.txt" 'runnel_checkpoint_seconds_count {"job": "product_ratings"} 4.0'
expect_contains "+Inf" "$T/parsed.txt" 'runnel_special {"job": "product_ratings", "v": "inf"} inf'
expect_contains "-Inf" "$T/parsed.txt" 'runnel_special {"job": "product_ratings", "v": "-inf"} -inf'
expect_contains "NaN" "$T/parsed.txt" 'runnel_special {"job": "product_ratings", "v": "nan"} nan'
expect_contains "1e+300" "$T/parsed.txt" 'runnel_special {"job": "product_ratings", "v": "big"} 1e+300'
expect_eq "every sample line was parsed" "$(grep -vc '^#' "$T/metrics.txt")" "$(grep -vc '^help ' "$T/parsed.txt")"

# a real job's registry, model figures included, through --metrics-file: the same parser reads
# it, and its numbers are the summary's (both come from the one registry)
start_model_server
bin/gen-reviews --rows 300 --seed 9 > "$T/in.csv" 2>/dev/null
cat > "$T/job.lua" <<'LUA'
return job {
  name = "metered",
  source = source.csv { path = param("input"), select = { id = "Id", summary = "Summary" } },
  predict = model.openai { endpoint = env("OPENAI_BASE_URL"), model = "m", prompt = "{{summary}}",
                           output = { rating = { type = "integer", min = 1, max = 5 } }, cache = false },
  sinks = sink.jsonl { path = param("output") },
}
LUA
check "a model job writes --metrics-file" $RUNNEL run "$T/job.lua" --set input="$T/in.csv" --set output="$T/out.jsonl" \
  --no-progress --quiet --summary-json "$T/s.json" --metrics-file "$T/job.prom"
check "the parser reads the job's metrics" sh -c "$PY '$T/read.py' '$T/job.prom' > '$T/job.txt'"
expect_contains "records read, labelled with the job" "$T/job.txt" 'counter runnel_records_read runnel_records_read_total {"job": "metered"} 300.0'
expect_contains "model requests, as the summary counts them" "$T/job.txt" \
  "counter runnel_model_requests runnel_model_requests_total {\"job\": \"metered\", \"model\": \"openai.m\"} $(sj "$T/s.json" .model.requests).0"
expect_contains "tokens in, as the summary counts them" "$T/job.txt" \
  "runnel_model_tokens_in_total {\"job\": \"metered\", \"model\": \"openai.m\"} $(sj "$T/s.json" .model.tokens_in).0"
expect_contains "the latency histogram counts every request" "$T/job.txt" \
  "runnel_model_latency_seconds_count {\"job\": \"metered\", \"model\": \"openai.m\"} $(sj "$T/s.json" .model.requests).0"
finish
