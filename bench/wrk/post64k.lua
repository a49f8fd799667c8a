-- POST a 64 KiB body (the echo app sends it back). Run wrk with cwd = bench/wrk.
wrk.method = "POST"
wrk.body = string.rep("x", 65536)
wrk.headers["Content-Type"] = "application/octet-stream"
dofile("report.lua")
