// Following an SSE stream with the browser's EventSource, every event once and in order:
// it resumes by itself after a disconnect (it sends Last-Event-ID); if the browser gives
// up (it does for good on any answer but 200: a 401 when the session ended, a 204 when a
// finished run's stream has nothing more), `probe(last)` asks the API what happened:
// 'ended' (the run is over and every event is here), else it opens the stream again after
// the last id seen, waiting longer each time. A 401 there shows the sign-in (api.js).
// `key` picks an event's id (a run's sequence, the global log's position): anything at or
// below the last one is a duplicate and is dropped.

export function follow (path, { key, onEvent, onDone, onState, probe, after = 0 }) {
  let last = after
  let source = null
  let stopped = false
  let retry = null
  let backoff = 3000

  function open () {
    const url = new URL(path, location.origin)
    url.searchParams.set('named', 'false')
    if (last) url.searchParams.set('after', String(last))
    source = new EventSource(url)
    source.onopen = () => { backoff = 3000; onState && onState('live') }
    source.onmessage = (message) => {
      const event = JSON.parse(message.data)
      if (event.type === 'done') {
        stop()
        onState && onState('ended')
        onDone && onDone()
        return
      }
      const id = key(event)
      if (id <= last) return
      last = id
      onEvent(event)
    }
    source.onerror = async () => {
      if (stopped) return
      onState && onState('reconnecting')
      if (source.readyState !== EventSource.CLOSED) return // the browser reconnects itself
      const verdict = probe ? await probe(last).catch(() => 'retry') : 'retry'
      if (stopped) return
      if (verdict === 'ended') {
        stop()
        onState && onState('ended')
        onDone && onDone()
        return
      }
      clearTimeout(retry)
      retry = setTimeout(() => { if (!stopped) open() }, backoff)
      backoff = Math.min(backoff * 2, 30000)
    }
  }

  function stop () {
    stopped = true
    clearTimeout(retry)
    if (source) source.close()
  }

  open()
  return { stop, last: () => last }
}
