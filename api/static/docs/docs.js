// Renders /api/openapi.json with Swagger UI. The document needs a key: the page's session
// cookie, or a sign-in with a user key first (POST /api/session). Requests made from the
// page carry X-Requested-With, which writes authenticated by the cookie need.
const form = document.getElementById('sign-in')

async function show () {
  const answer = await fetch('/api/openapi.json', { credentials: 'same-origin' })
  if (answer.status === 401) {
    form.hidden = false
    document.getElementById('key').focus()
    return
  }
  form.hidden = true
  window.ui = SwaggerUIBundle({ // eslint-disable-line no-undef
    spec: await answer.json(),
    dom_id: '#ui',
    deepLinking: true,
    requestInterceptor: (request) => {
      request.headers['X-Requested-With'] = 'runledger'
      return request
    }
  })
}

form.addEventListener('submit', async (event) => {
  event.preventDefault()
  const key = document.getElementById('key').value
  const answer = await fetch('/api/session', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ key })
  })
  if (answer.status === 204) {
    show()
  } else {
    document.getElementById('sign-in-error').textContent = 'That key was not accepted.'
  }
})

show()
