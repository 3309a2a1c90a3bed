-- jobtest.lua: the case side of `runnel test` (engine/jobtest.c runs the job's own pipeline):
-- reading a test file's cases, the records and model answers it feeds in, and comparing what
-- came out with what the case expects. It runs inside the job's sandboxed state, compiled in
-- (serve/assets.h); it returns the table H of functions jobtest.c calls.
local H = {}
local case, where          -- the case being run, and "FILE: case NAME" for messages
local read, seq_of, prompts, written, dead, lines

local function show(v)
  if type(v) == "function" then return "a function" end
  local ok, text = pcall(json.encode, v)
  if ok then return text end
  return tostring(v)
end

local function copy(v)
  if type(v) ~= "table" then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = copy(x) end
  return t
end

local function sorted_keys(...)
  local seen, keys = {}, {}
  for _, t in ipairs({...}) do
    for k in pairs(t) do
      if not seen[k] then seen[k] = true; keys[#keys + 1] = k end
    end
  end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

-- Equal as the output would show them: same types (an integer is not a float), same fields.
local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) == "number" then return math.type(a) == math.type(b) and a == b end
  if type(a) ~= "table" then return a == b end
  for _, k in ipairs(sorted_keys(a, b)) do
    if not same(a[k], b[k]) then return false end
  end
  return true
end

-- The fields that differ, one "- name = expected" / "+ name = got" pair each, nested by path.
local function diff(expected, got, path, out)
  for _, k in ipairs(sorted_keys(expected, got)) do
    local e, g, name = expected[k], got[k], path .. tostring(k)
    if type(e) == "table" and type(g) == "table" then
      diff(e, g, name .. ".", out)
    elseif not same(e, g) then
      out[#out + 1] = "      - " .. name .. " = " .. (e == nil and "(absent)" or show(e))
      out[#out + 1] = "      + " .. name .. " = " .. (g == nil and "(absent)" or show(g))
    end
  end
end

local function text_diff(expected, got, out)
  local e, g = {}, {}
  for l in (expected .. "\n"):gmatch("(.-)\n") do e[#e + 1] = l end
  for l in (got .. "\n"):gmatch("(.-)\n") do g[#g + 1] = l end
  for i = 1, math.max(#e, #g) do
    if e[i] == g[i] then
      out[#out + 1] = "        " .. e[i]
    else
      if e[i] then out[#out + 1] = "      - " .. e[i] end
      if g[i] then out[#out + 1] = "      + " .. g[i] end
    end
  end
end

local expectations = { "written", "filtered", "dead", "prompts", "lines", "error" }
local known = { name = true, records = true, fixture = true, answer = true }
for _, k in ipairs(expectations) do known[k] = true end

-- The test file's table: { cases = { { name =, records = | fixture =, answer =, written =, ... } } }.
-- Returns the number of cases; errors name the case and the key at fault.
function H.load(spec, file)
  for k in pairs(type(spec) == "table" and spec or {}) do
    if k ~= "cases" and k ~= "params" and k ~= "env" then
      error(file .. ": unknown key " .. show(k) .. " (a test file has cases, params, env)", 0)
    end
  end
  if type(spec) ~= "table" or type(spec.cases) ~= "table" then
    error(file .. ": a test file returns { cases = { { name = ..., records = { ... }, written = { ... } }, ... } }", 0)
  end
  for i, c in ipairs(spec.cases) do
    local name = type(c) == "table" and c.name or ("case " .. i)
    local at = file .. ": case " .. show(name)
    if type(c) ~= "table" then error(at .. ": a case is a table", 0) end
    for k in pairs(c) do
      if not known[k] then error(at .. ": unknown key " .. show(k) .. " (a case has " ..
        "name, records or fixture, answer, written, filtered, dead, prompts, lines, error)", 0) end
    end
    if (c.records == nil) == (c.fixture == nil) then error(at .. ": give either records = { ... } or fixture = \"FILE\"", 0) end
    if c.records ~= nil and type(c.records) ~= "table" then error(at .. ": records is a list of record tables", 0) end
    if c.fixture ~= nil and type(c.fixture) ~= "string" then error(at .. ": fixture is a file name", 0) end
    local any = false
    for _, k in ipairs(expectations) do any = any or c[k] ~= nil end
    if not any then error(at .. ": expects nothing (give written, filtered, dead, prompts, lines or error)", 0) end
  end
  H.spec, H.file = spec, file
  return #spec.cases
end

-- Start case i: returns its name, and the fixture file or nil (records are fed by H.record).
function H.begin(i)
  case = H.spec.cases[i]
  case.name = case.name or ("case " .. i)
  where = H.file .. ": case " .. show(case.name)
  read, seq_of, prompts, written, dead, lines = {}, setmetatable({}, { __mode = "k" }), {}, {}, {}, {}
  return case.name, case.fixture
end

-- The n-th input record (a copy: the job may change it), or nil after the last.
function H.record(n)
  local r = case.records[n]
  if r == nil then return nil end
  if type(r) ~= "table" then error(where .. ": records[" .. n .. "] is a " .. type(r) .. ", not a table", 0) end
  return copy(r)
end

-- The source read record seq (0-based) as table t.
function H.read(t, seq)
  read[seq + 1] = copy(t)
  seq_of[t] = seq
end

-- The model's answer to one call: call = { prompt =, system =, correction =, previous_answer =,
-- record = the record }. A string, number or boolean is the answer text; a list of numbers an
-- embedding.
function H.answer(call)
  local seq = seq_of[call.record]
  if seq and not call.correction then prompts[#prompts + 1] = { seq = seq, text = call.prompt } end
  local a = case.answer
  if type(a) == "function" then
    a = a(call.prompt, call)
  elseif type(a) == "table" and a.by ~= nil then
    local key = call.record[a.by]
    local answers = a.answers or {}
    a = answers[key]
    if a == nil then a = answers[tostring(key)] end
    if a == nil then error("the case has no answer for " .. tostring(case.answer.by) .. " = " .. show(key), 0) end
  end
  if a == nil then error("the case gives no answer (answer = ...) and the job asked the model", 0) end
  local t = type(a)
  if t ~= "string" and t ~= "number" and t ~= "boolean" and t ~= "table" then
    error("an answer is a string, a number, a boolean or a list of numbers, not a " .. t, 0)
  end
  return a
end

function H.write(sink, seq, t, json_line, encoded)
  if sink == 1 then written[#written + 1] = { seq = seq, record = copy(t) } end
  lines[sink] = lines[sink] or {}
  lines[sink][#lines[sink] + 1] = encoded or json_line
end

function H.dead(t)
  dead[#dead + 1] = copy(t)
end

local function input_of(seq)
  return "input " .. (seq + 1) .. ": " .. show(read[seq + 1])
end

-- After the run: job_error is the job's error or nil, count the records the source read.
-- Returns passed, and the report's lines (nothing for a pass).
function H.finish(job_error, count)
  local out = {}
  local filtered = count - #written - #dead
  local function fail(line) out[#out + 1] = "    " .. line end

  if job_error and case.error == nil then fail("the job failed: " .. job_error) end
  if case.error ~= nil then
    if not job_error then fail("expected the job to fail with " .. show(case.error) .. "; it finished")
    elseif not job_error:find(case.error) then
      fail("expected the job to fail with " .. show(case.error) .. "; it failed with:")
      out[#out + 1] = "      " .. job_error
    end
  end

  local w = case.written
  if type(w) == "function" then
    local recs = {}
    for i, x in ipairs(written) do recs[i] = x.record end
    local ok, why = w(recs)
    if not ok then fail("written: the check returned " .. show(ok) .. (why and (": " .. tostring(why)) or "")) end
  elseif w ~= nil then
    if #w ~= #written then fail("expected " .. #w .. " records written, got " .. #written) end
    for i = 1, math.max(#w, #written) do
      local e, g = w[i], written[i]
      if g == nil then
        fail("record " .. i .. " written: expected " .. show(e) .. ", none came")
      elseif e == nil then
        fail("record " .. i .. " written, not expected (" .. input_of(g.seq) .. "):")
        out[#out + 1] = "      + " .. show(g.record)
      elseif type(e) == "function" then
        local ok, why = e(g.record)
        if not ok then
          fail("record " .. i .. " written (" .. input_of(g.seq) .. ") fails its check" .. (why and (": " .. tostring(why)) or "") .. ":")
          out[#out + 1] = "      " .. show(g.record)
        end
      elseif not same(e, g.record) then
        fail("record " .. i .. " written (" .. input_of(g.seq) .. ") differs:")
        diff(e, g.record, "", out)
      end
    end
  end

  if case.filtered ~= nil and case.filtered ~= filtered then
    fail("expected " .. show(case.filtered) .. " records filtered, got " .. filtered)
  end

  local d = case.dead
  if d == nil then
    for _, x in ipairs(dead) do fail("dead-lettered, not expected: stage " .. show(x.stage) .. ": " .. tostring(x.reason) ..
      " (record " .. show(x.record) .. ")") end
  elseif type(d) == "number" then
    if d ~= #dead then
      fail("expected " .. d .. " dead letters, got " .. #dead)
      for _, x in ipairs(dead) do out[#out + 1] = "      + stage " .. show(x.stage) .. ": " .. tostring(x.reason) end
    end
  else
    if #d ~= #dead then fail("expected " .. #d .. " dead letters, got " .. #dead) end
    for i = 1, math.max(#d, #dead) do
      local e, g = d[i], dead[i]
      if g == nil then
        fail("dead letter " .. i .. ": expected stage " .. show(e.stage) .. ", reason matching " .. show(e.reason) .. "; none came")
      elseif e == nil then
        fail("dead letter " .. i .. ", not expected: stage " .. show(g.stage) .. ": " .. tostring(g.reason))
      else
        local bad = (e.stage ~= nil and e.stage ~= g.stage) or (e.reason ~= nil and not tostring(g.reason):find(e.reason))
        if not bad and e.record ~= nil then bad = not same(e.record, g.record) end
        if bad then
          fail("dead letter " .. i .. " differs (record " .. show(g.record) .. "):")
          out[#out + 1] = "      - stage " .. show(e.stage) .. ", reason matching " .. show(e.reason)
          out[#out + 1] = "      + stage " .. show(g.stage) .. ": " .. tostring(g.reason)
          if e.record ~= nil and type(g.record) == "table" then diff(e.record, g.record, "record.", out) end
        end
      end
    end
  end

  local p = case.prompts
  table.sort(prompts, function(a, b) return a.seq < b.seq end)
  if type(p) == "function" then
    local texts = {}
    for i, x in ipairs(prompts) do texts[i] = x.text end
    local ok, why = p(texts)
    if not ok then fail("prompts: the check returned " .. show(ok) .. (why and (": " .. tostring(why)) or "")) end
  elseif p ~= nil then
    if #p ~= #prompts then fail("expected " .. #p .. " prompts, the model was asked " .. #prompts) end
    for i = 1, math.max(#p, #prompts) do
      local e, g = p[i], prompts[i]
      if g == nil then
        fail("prompt " .. i .. ": expected " .. show(e) .. ", none was rendered")
      elseif e == nil then
        fail("prompt " .. i .. ", not expected (" .. input_of(g.seq) .. "): " .. show(g.text))
      elseif e ~= g.text then
        fail("prompt " .. i .. " (" .. input_of(g.seq) .. ") differs:")
        text_diff(e, g.text, out)
      end
    end
  end

  if case.lines ~= nil then -- { [n] = { "line", ... } }: what sink n (in declaration order) was given
    for k, e in pairs(case.lines) do
      local g = lines[k] or {}
      if #e ~= #g then fail("expected " .. #e .. " lines for sink " .. tostring(k) .. ", got " .. #g) end
      for i = 1, math.max(#e, #g) do
        if e[i] ~= g[i] then
          fail("line " .. i .. " of sink " .. tostring(k) .. " differs:")
          text_diff(e[i] or "(none)", g[i] or "(none)", out)
        end
      end
    end
  end

  return #out == 0, table.concat(out, "\n")
end

return H
