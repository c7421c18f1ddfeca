// The application shell: header, routing, session guard. The editor screen (CodeMirror + Yjs) is a
// separate chunk loaded on /prds/<id> only, so /login and / stay small.
import './styles.css'
import { currentSession, loadPrdMeta, logout, onSessionExpired, wsUrl } from './api'
import { h } from './dom'
import { loginPath, parseRoute, type Route } from './router'
import { renderLogin } from './screens/login'
import { renderList } from './screens/list'

export interface AppContext {
  navigate: (path: string, replace?: boolean) => void
  /** Shows "session expired" over the current screen, with a way back to the login form. */
  sessionExpired: () => void
}

type Cleanup = (() => void) | undefined
let cleanup: Cleanup
let renderCount = 0
const app = document.getElementById('app') as HTMLElement

function navigate (path: string, replace = false): void {
  if (replace) history.replaceState(null, '', path)
  else history.pushState(null, '', path)
  void render()
}

const here = (): string => location.pathname + location.search

function sessionExpired (): void {
  document.querySelector('.session-expired')?.remove()
  const banner = h('div', { class: 'session-expired', role: 'alert' },
    h('p', {}, 'Your session has expired or was ended. Your edits are kept on this device.'),
    h('a', { href: loginPath(here()), class: 'button primary' }, 'Log in again'))
  document.querySelector('.topbar')?.after(banner)
}

const ctx: AppContext = { navigate, sessionExpired }

function header (): HTMLElement {
  const session = currentSession()
  return h('header', { class: 'topbar' },
    h('a', { href: '/', class: 'brand' }, 'PRD Tool'),
    session === null
      ? null
      : h('div', { class: 'account' },
        h('span', { class: 'whoami', 'aria-label': `Logged in as ${session.username}` }, session.username),
        h('button', {
          type: 'button',
          class: 'button',
          onclick: () => {
            cleanup?.() // stops the editor's provider before the token is revoked
            cleanup = undefined
            void logout().then(() => navigate('/login'))
          }
        }, 'Log out')))
}

async function render (): Promise<void> {
  const token = ++renderCount
  cleanup?.()
  cleanup = undefined
  let route: Route = parseRoute(location.pathname, location.search)
  if (route.name !== 'login' && currentSession() === null) {
    history.replaceState(null, '', loginPath(here()))
    route = parseRoute(location.pathname, location.search)
  }
  if (currentSession() !== null) void wsUrl() // learn where the WebSocket is before an editor needs it
  const main = h('main', { id: 'main', tabindex: '-1' })
  app.replaceChildren(header(), main)
  switch (route.name) {
    case 'login':
      document.title = 'Log in · PRD Tool'
      cleanup = renderLogin(main, ctx, route.next)
      break
    case 'list':
      document.title = 'Your PRDs · PRD Tool'
      cleanup = renderList(main, ctx)
      break
    case 'editor': {
      main.append(h('p', { class: 'loading', role: 'status' }, 'Opening the editor…'))
      const meta = loadPrdMeta(route.id) // in parallel with loading the editor's code
      meta.catch(() => {}) // handled by the editor screen
      const { renderEditor } = await import('./screens/editor')
      if (token !== renderCount) return // the person navigated away meanwhile
      cleanup = renderEditor(main, ctx, meta)
      break
    }
    default:
      document.title = 'Not found · PRD Tool'
      main.append(h('h1', {}, 'Page not found'), h('p', {}, h('a', { href: '/' }, 'Back to your PRDs')))
  }
}

// Same-origin links are handled here (no full page load).
document.addEventListener('click', event => {
  const link = (event.target as Element | null)?.closest?.('a')
  if (link === null || link === undefined || event.defaultPrevented || event.button !== 0 ||
      event.metaKey || event.ctrlKey || event.shiftKey || event.altKey || link.target !== '' || link.hasAttribute('download')) return
  const url = new URL(link.href, location.href)
  if (url.origin !== location.origin || url.pathname.startsWith('/api/')) return
  event.preventDefault()
  navigate(url.pathname + url.search)
})
window.addEventListener('popstate', () => { void render() })
onSessionExpired(sessionExpired)

if (import.meta.env.PROD && 'serviceWorker' in navigator) {
  // Caches the app shell so that a PRD reopened without a network still shows its local copy.
  void navigator.serviceWorker.register('/sw.js').catch(() => {})
}

void render()
