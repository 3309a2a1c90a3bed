#!/usr/bin/env bash
# The providers' and tasks' options: mistakes are reported with the script line, the provider
# and the option at fault. Values are refused by `runnel check` (the declaration line); what
# needs several options at once, the file system or the environment is refused when the job
# opens, before any record is read or any call is made.
. "$(dirname "$0")/../lib.sh"
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_REGION AWS_DEFAULT_REGION \
  AWS_BEARER_TOKEN_BEDROCK GOOGLE_APPLICATION_CREDENTIALS
printf 'Id,Summary\n1,fine\n' > "$T/in.csv"

# job NAME 'MODEL DECLARATION': a script whose model is on line 2
job() {
  cat > "$T/$1.lua" <<LUA
local m =
  $2
return job { name = "$1", source = source.csv { path = "$T/in.csv" }, predict = m, sinks = sink.stdout {} }
LUA
}
# refused_by COMMAND NAME TEXT: runnel COMMAND fails (exit 1) saying TEXT
refused_by() {
  if [ "$1" = check ]; then $RUNNEL check "$T/$2.lua" >"$T/$2.out" 2>&1
  else $RUNNEL run --no-cache "$T/$2.lua" >"$T/$2.out" 2>&1; fi
  local rc=$?
  if [ $rc -eq 1 ] && grep -qF -- "$3" "$T/$2.out"; then pass "$2: $3"
  else fail "$2 (exit $rc): want '$3'"; sed 's/^/   | /' "$T/$2.out"; fi
}

job centroid_words "model.ollama { model = 'e', task = 'clustering', prompt = '{{Summary}}', centroids = { a = { 1, 'x' } } }"
refused_by check centroid_words "centroid_words.lua:2: model.ollama: centroids.a: item 2 is not a finite number"
job centroid_zero "model.ollama { model = 'e', task = 'clustering', prompt = '{{Summary}}', centroids = { a = { 0, 0 } } }"
refused_by check centroid_zero "centroids.a: a centroid of zeros has no direction"
job deployment "model.azure_openai { resource = 'r', deployment = 'a/b', prompt = 'x', task = 'text_generation' }"
refused_by check deployment "deployment.lua:2: model.azure_openai: deployment: \"a/b\": letters, digits"
job pointer "model.http { url = 'http://127.0.0.1:9/', answer = 'predictions/0', prompt = 'x', task = 'text_generation' }"
refused_by check pointer "model.http: answer: \"predictions/0\" is not a JSON pointer"
job method "model.http { url = 'http://127.0.0.1:9/', method = 'GET', prompt = 'x', task = 'text_generation' }"
refused_by check method "model.http: method:"

job centroid_lengths "model.ollama { model = 'e', task = 'clustering', prompt = '{{Summary}}', centroids = { a = { 1, 0 }, b = { 1, 0, 0 } } }"
refused_by run centroid_lengths "centroid_lengths.lua:2: model.ollama: centroids.b: 3 numbers, but centroids.a has 2"
job centroids_task "model.ollama { model = 'e', task = 'embedding', prompt = '{{Summary}}', centroids = { a = { 1, 0 } } }"
refused_by run centroids_task "centroids: for task clustering only"
job regression_llm "model.openai { model = 'm', task = 'regression', prompt = 'x', output = { price = 'number' } }"
refused_by run regression_llm "model.openai: task: this provider does not do regression (model.http reaches a model that does)"
job cluster_bare "model.anthropic { model = 'm', api_key = 'k', task = 'clustering', prompt = 'x' }"
refused_by run cluster_bare "task: clustering needs centroids"
job regression_words "model.http { url = 'http://127.0.0.1:9/', task = 'regression', output = { label = 'string' } }"
refused_by run regression_words "output.label: task regression fills numbers"
job cluster_fields "model.http { url = 'http://127.0.0.1:9/', task = 'clustering', output = { a = 'string', b = 'string' } }"
refused_by run cluster_fields "output: task clustering fills one field"
job structured_http "model.http { url = 'http://127.0.0.1:9/', structured = true, prompt = 'x', output = { a = 'string' } }"
refused_by check structured_http "structured: unknown option"
job bedrock_bare "model.bedrock { region = 'us-east-1', model = 'm', prompt = 'x', task = 'text_generation' }"
refused_by run bedrock_bare "model.bedrock: access_key_id: no AWS credentials"
job bedrock_region "model.bedrock { model = 'm', api_key = 'k', prompt = 'x', task = 'text_generation' }"
refused_by run bedrock_region "model.bedrock: region: give the AWS region"
job vertex_bare "model.vertex { project = 'p', model = 'm', prompt = 'x', task = 'text_generation' }"
refused_by run vertex_bare "model.vertex: token: give token = secret(\"VERTEX_TOKEN\") or credentials"
job vertex_missing "model.vertex { project = 'p', model = 'm', credentials = '$T/none.json', prompt = 'x', task = 'text_generation' }"
refused_by run vertex_missing "model.vertex: credentials:"
job azure_both "model.azure_openai { resource = 'r', endpoint = 'https://r.openai.azure.com', deployment = 'd', prompt = 'x', task = 'text_generation' }"
refused_by run azure_both "azure_both.lua:2: model.azure_openai: endpoint: give endpoint or resource, not both"
job http_template "model.http { url = 'http://127.0.0.1:9/', body = '{\"a\": {{x}', prompt = 'x', task = 'text_generation' }"
refused_by run http_template "model.http: body: unclosed {{ at byte 6"
finish
