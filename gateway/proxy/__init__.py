"""The data plane, in request order: `edge` (the HTTP parser's limits), `endpoint` (admit, read,
resolve, decide, record), `attempts` (retries and fallback), `forward` (one upstream attempt),
`sse` (the stream relay), `headers` (hygiene both ways), `deadline` (attempt timeouts),
`upstream` (the transport plug point), `shadow` (copies to a shadow version).
"""
