// Building the page: elements from data with textContent only (never HTML from data).

export function h (tag, attrs = {}, ...children) {
  const el = document.createElement(tag)
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue
    if (name.startsWith('on')) el.addEventListener(name.slice(2), value)
    else if (name === 'class') el.className = value
    else if (name === 'dataset') Object.assign(el.dataset, value)
    else if (value === true) el.setAttribute(name, '')
    else el.setAttribute(name, String(value))
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue
    el.append(child instanceof Node ? child : document.createTextNode(String(child)))
  }
  return el
}

export function badge (status) {
  return h('span', { class: `badge s-${status}`, dataset: { status } }, status.replaceAll('_', ' '))
}

export function when (stamp) {
  return stamp ? stamp.slice(0, 19).replace('T', ' ') : ''
}

export function debounce (fn, ms) {
  let timer = null
  return (...args) => {
    clearTimeout(timer)
    timer = setTimeout(() => fn(...args), ms)
  }
}

// What an event says, in one line.
export function summary (event) {
  const data = event.data || {}
  for (const field of ['line', 'text', 'prompt', 'message', 'comment', 'instruction', 'reason', 'task']) {
    if (typeof data[field] === 'string' && data[field]) return data[field]
  }
  if (data.failure) return `${data.failure.category}: ${data.failure.message}`
  if (data.name) return data.name
  const text = JSON.stringify(data)
  return text === '{}' ? '' : text
}

// At most one call per `ms`, and never more than `ms` late: under a steady stream of
// events a view still refreshes (a debounce would wait for the stream to pause).
export function throttle (fn, ms) {
  let timer = null
  let args = []
  return (...latest) => {
    args = latest
    if (timer) return
    timer = setTimeout(() => { timer = null; fn(...args) }, ms)
  }
}
