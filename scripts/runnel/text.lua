-- runnel.text: small text helpers for job scripts: local text = require("runnel.text")
local text = {}

local entities = { amp = "&", lt = "<", gt = ">", quot = '"', apos = "'", nbsp = " " }

-- Decode the HTML entities and strip the tags that review texts carry (<br />, &quot;).
function text.strip_html(s)
  if s == nil then return nil end
  s = s:gsub("<[bB][rR]%s*/?>", " "):gsub("<[^>]*>", "")
  s = s:gsub("&(#?)(%w+);", function(hash, name)
    if hash == "#" then
      local code = name:sub(1, 1):lower() == "x" and tonumber(name:sub(2), 16) or tonumber(name)
      if code and code < 0x110000 then return utf8.char(code) end
      return nil
    end
    return entities[name]
  end)
  return s
end

-- Collapse runs of white space to one space and trim both ends.
function text.squish(s)
  if s == nil then return nil end
  return (s:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", ""))
end

-- At most n characters (UTF-8 aware), with "..." when cut.
function text.truncate(s, n)
  if s == nil or utf8.len(s) == nil or utf8.len(s) <= n then return s end
  return s:sub(1, utf8.offset(s, n + 1) - 1) .. "..."
end

-- Number of words.
function text.word_count(s)
  local n = 0
  for _ in (s or ""):gmatch("%S+") do n = n + 1 end
  return n
end

return text
