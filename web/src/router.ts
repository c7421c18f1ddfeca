// History-API routing for /login, / and /prds/<id> (the gateway and CloudFront answer every
// extension-less path with index.html).
export type Route =
  | { name: 'login', next: string }
  | { name: 'list' }
  | { name: 'editor', id: string }
  | { name: 'not-found' }

/** A safe place to return to after logging in: a path of this site, never another origin. */
export function safeNext (next: string | null | undefined): string {
  if (next == null || !next.startsWith('/') || next.startsWith('//') || next.startsWith('/\\') || next.startsWith('/login')) return '/'
  return next
}

export function parseRoute (pathname: string, search: string): Route {
  if (pathname === '/login') return { name: 'login', next: safeNext(new URLSearchParams(search).get('next')) }
  if (pathname === '/' || pathname === '/prds' || pathname === '/prds/') return { name: 'list' }
  const match = /^\/prds\/([A-Za-z0-9_-]{1,100})\/?$/.exec(pathname)
  if (match !== null) return { name: 'editor', id: match[1] }
  return { name: 'not-found' }
}

export const loginPath = (next: string): string => next === '/' ? '/login' : `/login?next=${encodeURIComponent(next)}`
