// The API, as the page calls it: the session cookie authenticates, writes carry the header
// that proves they come from this page, and every read after a write waits for the read
// models to include it (min_position), so the page always reads its own writes.

export class ApiError extends Error {
  constructor (status, body) {
    super((body && body.detail) || `HTTP ${status}`)
    this.status = status
    this.body = body || {}
  }
}

let written = 0 // the position of the page's latest write
const listeners = { unauthorized: [] }

export function onUnauthorized (fn) { listeners.unauthorized.push(fn) }

export async function call (method, path, body, params) {
  const url = new URL(path, location.origin)
  for (const [name, value] of Object.entries(params || {})) {
    for (const v of [].concat(value)) if (v !== undefined && v !== null && v !== '') url.searchParams.append(name, v)
  }
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } }
  if (method !== 'GET') {
    init.headers['Content-Type'] = 'application/json'
    init.headers['X-Requested-With'] = 'runledger'
    init.body = JSON.stringify(body || {})
  }
  const answer = await fetch(url, init)
  const type = answer.headers.get('content-type') || ''
  const data = answer.status === 204 ? null : type.includes('json') ? await answer.json() : await answer.text()
  if (answer.status === 401 && path !== '/api/session') listeners.unauthorized.forEach((fn) => fn())
  if (!answer.ok) throw new ApiError(answer.status, typeof data === 'object' ? data : { detail: data })
  const position = (data && typeof data === 'object' && typeof data.position === 'number')
    ? data.position
    : Number(answer.headers.get('X-Position') || 0)
  if (method !== 'GET' && position > written) written = position
  return { data, position: Number(answer.headers.get('X-Position') || position || 0) }
}

// A read that includes the page's own writes (and `atLeast`, e.g. an event's position).
export async function get (path, params = {}, atLeast = 0) {
  return (await read(path, params, atLeast)).data
}

// The same, with the position the answer includes (X-Position): a stream that follows
// from there misses nothing that came after the read.
export async function read (path, params = {}, atLeast = 0) {
  const wanted = Math.max(written, atLeast)
  const query = wanted ? { ...params, min_position: wanted } : params
  return call('GET', path, null, query)
}

export async function post (path, body) { return (await call('POST', path, body)).data }
export async function put (path, body) { return (await call('PUT', path, body)).data }
