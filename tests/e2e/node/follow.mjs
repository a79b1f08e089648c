// Follows one run's stream with the npm `eventsource` client, as a spec-following program
// would, and prints what happened as one JSON object: every connection the client made
// (its Last-Event-ID and the answer's status), every event it received, its errors.
//
//   node follow.mjs <server> <run id> <named: true|false> <type,type,...>
//
// The key comes from RUNLEDGER_KEY (sent as a bearer header by a wrapped fetch: Node has no
// cookie jar). With named frames, a listener per type (the types given) and `done`; with
// `?named=false`, onmessage alone. It exits once the client has stopped for good (the
// server's 204 after `done`) and then stayed silent for QUIET_MS, or after TIMEOUT_MS.
import { EventSource } from 'eventsource'

const [server, runId, namedArg, typesArg] = process.argv.slice(2)
const named = namedArg !== 'false'
const key = process.env.RUNLEDGER_KEY
const QUIET_MS = 5000 // longer than the stream's retry (3 s): a reconnect would show
const TIMEOUT_MS = 60000

const connections = []
const received = []
const errors = []

const url = `${server}/api/runs/${runId}/stream${named ? '' : '?named=false'}`
const es = new EventSource(url, {
  fetch: async (input, init) => {
    const headers = { ...init.headers, Authorization: `Bearer ${key}` }
    const response = await fetch(input, { ...init, headers })
    connections.push({ last_event_id: headers['Last-Event-ID'] ?? null, status: response.status })
    return response
  },
})

const keep = (event) => received.push({ id: event.lastEventId, type: event.type, data: event.data })
if (named) {
  for (const type of typesArg.split(',').filter(Boolean)) es.addEventListener(type, keep)
  es.addEventListener('done', keep)
}
es.onmessage = keep // named frames never reach it; unnamed ones all do

let finish
es.onerror = (event) => {
  errors.push({ code: event.code ?? null, message: event.message ?? null, state: es.readyState })
  if (es.readyState === EventSource.CLOSED && !finish) {
    finish = setTimeout(report, QUIET_MS)
  }
}

function report () {
  const out = { connections, received, errors, ready_state: es.readyState }
  es.close()
  process.stdout.write(JSON.stringify(out) + '\n')
  process.exit(0)
}
setTimeout(report, TIMEOUT_MS)
es.onopen = () => console.error('open') // the test waits for this before it appends more
