// Following an SSE stream with the browser's EventSource, every event once and in order:
// it resumes by itself after a disconnect (it sends Last-Event-ID); if the browser gives
// up, the stream is opened again after the last id seen. `key` picks an event's id (a
// run's sequence, the global log's position): anything at or below the last one is a
// duplicate and is dropped.

export function follow (path, { key, onEvent, onDone, onState, after = 0 }) {
  let last = after
  let source = null
  let stopped = false
  let retry = null

  function open () {
    const url = new URL(path, location.origin)
    url.searchParams.set('named', 'false')
    if (last) url.searchParams.set('after', String(last))
    source = new EventSource(url)
    source.onopen = () => onState && onState('live')
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
    source.onerror = () => {
      if (stopped) return
      onState && onState('reconnecting')
      if (source.readyState === EventSource.CLOSED) {
        clearTimeout(retry)
        retry = setTimeout(() => { if (!stopped) open() }, 3000)
      }
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
