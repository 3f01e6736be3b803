-- wrk script for bench/jwt.sh: every request carries `Authorization: Bearer <token>`,
-- the tokens taken in turn from a file (one per line), starting at a given line; or, for a
-- line "INPUT<TAB>SIGNATURE" (pre-signed), the Signature-Input and Signature fields.
--   wrk ... -s tokens.lua -- FILE [START]
-- With a file of one token every request repeats it (the cache case); with a file of
-- many, each request takes the next (the fresh-token case). `done` reports whether the
-- file was used up and wrapped around (then some "fresh" tokens were seen twice).
local threads = {}
tokens, signed, n, i, wrapped = {}, {}, 0, 0, 0
path = os.getenv("REQ_PATH") or "/"

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then
      n = n + 1
      local input, sig = line:match("^([^\t]+)\t(.+)$")
      if input then
        -- A pre-signed request (bench/jwt/presign.py): Signature-Input TAB Signature.
        tokens[n] = input
        signed[n] = sig
      else
        tokens[n] = "Bearer " .. line
      end
    end
  end
  i = tonumber(args[2] or "0") % n
end

function request()
  i = i + 1
  if i > n then
    i = 1
    wrapped = wrapped + 1
  end
  local t = tokens[i]
  if signed[i] then
    wrk.headers["Signature-Input"] = t
    wrk.headers["Signature"] = signed[i]
  else
    wrk.headers["Authorization"] = t
  end
  return wrk.format("GET", path)
end

function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    io.write(string.format("tokens: %d, wrapped: %d\n", t:get("n"), t:get("wrapped")))
  end
end
