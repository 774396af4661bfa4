-- wrk script for bench/mnist.sh: POSTs one image as multipart/form-data,
-- field "images", like `curl -F images=@FILE`, on every request, and checks
-- each 200 answer's body for the expected digit.
--
-- Environment:
--   BENCH_IMAGE    path of the image to post (required)
--   BENCH_EXPECT   the digit every 200 answer must contain (optional)
--
-- done() prints "wrong answers: N" (200s whose body lacks
-- "mnist_result":EXPECT, summed over wrk's threads); wrk itself counts
-- non-2xx answers ("Non-2xx or 3xx responses").

local path = os.getenv("BENCH_IMAGE")
assert(path, "set BENCH_IMAGE to the image to post")
local f = assert(io.open(path, "rb"))
local data = f:read("*a")
f:close()

local name = path:match("([^/]+)$")
local ctype = name:lower():match("%.png$") and "image/png" or "image/jpeg"
local boundary = "----modelarts-init-bench-7MA4YWxkTrZu0gW"
local expect = os.getenv("BENCH_EXPECT")
local want = expect and ('"mnist_result":' .. expect) or nil

wrk.method = "POST"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
wrk.body = table.concat({
    "--", boundary, "\r\n",
    'Content-Disposition: form-data; name="images"; filename="', name, '"\r\n',
    "Content-Type: ", ctype, "\r\n",
    "\r\n",
    data, "\r\n",
    "--", boundary, "--\r\n",
})

local threads = {}
function setup(thread)
    table.insert(threads, thread)
end

wrong = 0
function response(status, headers, body)
    if want and status == 200 then
        -- the JSON may have spaces after the colon
        local b = body:gsub("%s", "")
        if not b:find(want, 1, true) then
            wrong = wrong + 1
        end
    end
end

function done(summary, latency, requests)
    local n = 0
    for _, t in ipairs(threads) do
        n = n + (t:get("wrong") or 0)
    end
    io.write(string.format("wrong answers: %d\n", n))
end
