// /prds/<id>: one CodeMirror 6 editor bound to Y.Text("content") (y-codemirror.next), a local copy
// in IndexedDB (y-indexeddb), the live connection (PrdProvider) and the auto-save machine.
import * as Y from 'yjs'
import { IndexeddbPersistence } from 'y-indexeddb'
import { yCollab, yUndoManagerKeymap } from 'y-codemirror.next'
import { Compartment, EditorState, type Extension } from '@codemirror/state'
import { EditorView, drawSelection, highlightActiveLine, keymap } from '@codemirror/view'
import { defaultKeymap } from '@codemirror/commands'
import { markdownLanguage } from '@codemirror/lang-markdown'
import { LanguageSupport, defaultHighlightStyle, syntaxHighlighting } from '@codemirror/language'
import { ApiError, accessTo, currentSession, freshToken, rememberPrdMeta, wsUrl, type PrdMeta, type Role } from '../api'
import { AutoSaver, STATE_TEXT, type SyncState } from '../autosave'
import { h, messageOf, notice } from '../dom'
import type { AppContext } from '../main'
import { lazyPanel, mountPanels, registerPanel, type PanelContext } from '../panels'
import { outline, userFor } from '../presence'
import { PrdProvider } from '../provider'
import { openShareDialog } from './share'
import { followEditor, sectionIndexAt } from '../features/sections'

const EDIT_ROLES = new Set<Role>(['owner', 'editor'])

/** Renders /prds/<id>; `meta` is the PRD's metadata, requested by the shell while this chunk loaded. */
export function renderEditor (root: HTMLElement, ctx: AppContext, meta: Promise<PrdMeta>): () => void {
  const session = currentSession()
  if (session === null) return () => {}
  let disposed = false
  const disposers: Array<() => void> = []
  const dispose = (): void => {
    disposed = true
    disposers.splice(0).reverse().forEach(fn => fn())
  }

  meta.then(prd => {
    if (disposed) return
    root.replaceChildren()
    disposers.push(mount(root, ctx, prd, session.username))
  }, error => {
    if (disposed) return
    root.replaceChildren()
    if (error instanceof ApiError && error.status === 401) return ctx.sessionExpired()
    const text = error instanceof ApiError && (error.status === 403 || error.status === 404)
      ? 'This PRD does not exist or you do not have access to it.'
      : messageOf(error)
    root.append(h('div', { class: 'card' }, h('h1', {}, 'Cannot open this PRD'), notice(text), h('p', {}, h('a', { href: '/' }, 'Back to your PRDs'))))
  })
  return dispose
}

function mount (root: HTMLElement, ctx: AppContext, prd: PrdMeta, username: string): () => void {
  const cleanups: Array<() => void> = []
  let role: Role = prd.role
  let refused = false // the server refused us (access removed): read-only from then on
  const canEdit = (): boolean => EDIT_ROLES.has(role) && !refused
  const doc = new Y.Doc()
  const ytext = doc.getText('content')
  const meta = doc.getMap('meta')
  const local = new IndexeddbPersistence(`prdtool:${username}:${prd.id}`, doc)
  cleanups.push(() => { void local.destroy() })

  // ---- layout: sidebar | document | panels
  const title = h('h1', { class: 'doc-title', id: 'doc-title' }, prd.title)
  const syncEl = h('div', { class: 'sync', role: 'status', 'aria-live': 'polite', 'data-sync-state': 'offline' })
  const banner = h('div', { class: 'doc-banner' })
  const editorHost = h('div', { class: 'editor-host' })
  const toolbar = h('div', { class: 'doc-toolbar' })
  const readOnlyNote = h('p', { class: 'read-only', role: 'note' })
  const sidebar = h('nav', { class: 'sidebar', 'aria-label': 'Document navigation' })
  const panels = h('aside', { class: 'panels', 'aria-label': 'Panels' })
  root.append(h('div', { class: 'workspace' },
    sidebar,
    h('article', { class: 'doc', 'aria-labelledby': 'doc-title' },
      h('header', { class: 'doc-header' }, title, toolbar, syncEl),
      readOnlyNote,
      banner, editorHost),
    panels))
  document.title = `${prd.title} · PRD Tool`

  // ---- the live connection
  const provider = new PrdProvider(doc, {
    url: wsUrl,
    prd: prd.id,
    token: freshToken,
    checkAccess: async () => await accessTo(prd.id),
    connect: false,
    pingIntervalMs: 30_000
  })
  cleanups.push(() => provider.destroy())
  const user = userFor(username)
  provider.awareness?.setLocalStateField('user', user)

  // ---- the editor (its read-only switch follows the role, which may change while it is open)
  const access = new Compartment()
  const accessExtensions = (): Extension => [
    EditorState.readOnly.of(!canEdit()),
    EditorView.editable.of(canEdit()),
    EditorView.contentAttributes.of(canEdit() ? {} : { 'aria-readonly': 'true' })
  ]
  const view = new EditorView({
    parent: editorHost,
    state: EditorState.create({
      doc: ytext.toString(),
      extensions: [
        keymap.of([...yUndoManagerKeymap, ...defaultKeymap]),
        drawSelection(),
        highlightActiveLine(),
        EditorView.lineWrapping,
        new LanguageSupport(markdownLanguage), // GFM Markdown without the HTML-in-Markdown support (a third of the size)
        syntaxHighlighting(defaultHighlightStyle),
        yCollab(ytext, provider.awareness),
        access.of(accessExtensions()),
        EditorView.contentAttributes.of({ 'aria-label': `${prd.title} (Markdown)`, 'aria-multiline': 'true' })
      ]
    })
  })
  cleanups.push(() => view.destroy())

  // ---- auto-save state
  const showState = (state: SyncState): void => {
    syncEl.dataset.syncState = state
    if (state === 'error') {
      syncEl.replaceChildren(h('button', { type: 'button', class: 'button danger', onclick: () => saver.dispatch({ type: 'retryClicked' }) }, STATE_TEXT.error))
    } else {
      syncEl.replaceChildren(STATE_TEXT[state])
    }
  }
  const saver = new AutoSaver({
    saveLocal: () => { /* y-indexeddb stores every update as it happens; nothing is left to write */ },
    allAcked: () => provider.unacked.size === 0,
    resend: () => { if (provider.resendUnacked() === 0 && !provider.connected) provider.connect() },
    resync: () => provider.reconnect(),
    onState: showState
  })
  showState(saver.state)
  cleanups.push(() => saver.stop())

  const onDocUpdate = (_update: Uint8Array, origin: unknown): void => {
    if (origin !== provider && origin !== local) saver.dispatch({ type: 'edit' })
  }
  doc.on('update', onDocUpdate)
  cleanups.push(() => doc.off('update', onDocUpdate))
  cleanups.push(provider.on('synced', () => saver.dispatch({ type: 'connected' })))
  cleanups.push(provider.on('acked', () => saver.dispatch({ type: 'acked' })))
  cleanups.push(provider.on('save-failed', () => saver.dispatch({ type: 'failed' })))
  cleanups.push(provider.on('status', ({ status, reason }: { status: string, reason?: string }) => {
    if (status === 'disconnected' || status === 'denied') saver.dispatch({ type: 'disconnected' })
    if (status === 'denied') denied(reason === 'unauthorized' ? 'unauthorized' : 'forbidden')
  }))
  cleanups.push(provider.on('error-frame', (frame: { code?: string }) => {
    if (frame.code === 'read_only' && canEdit()) {
      banner.replaceChildren(notice('Your role on this PRD no longer allows editing: your last changes were not saved.'))
    }
  }))
  cleanups.push(provider.on('notice', (frame: { type?: string, role?: Role }) => {
    if (frame.type === 'role-changed' && frame.role !== undefined) applyRole(frame.role, true)
    // Sent with every sync: the role of this connection, e.g. editable again after a reconnect.
    if (frame.type === 'role' && frame.role !== undefined && frame.role !== role) applyRole(frame.role, true)
  }))

  let sessionEnded = false
  function denied (why: 'unauthorized' | 'forbidden'): void {
    // A lost session keeps the editor usable: edits stay in the local copy and upload after logging in again.
    if (why === 'unauthorized') {
      sessionEnded = true
      return ctx.sessionExpired()
    }
    refused = true
    applyRole(role)
    banner.replaceChildren(h('div', { class: 'notice notice-error', role: 'alert' },
      h('p', {}, 'Your access to this PRD was removed: the text shown is the last copy you received.'),
      h('p', {}, h('a', { href: '/' }, 'Back to your PRDs'))))
  }

  // The browser knows when the network goes: close at once (no half-open socket), reconnect when back.
  const offline = (): void => provider.disconnect()
  const online = (): void => { if (!refused && !sessionEnded) provider.connect() }
  window.addEventListener('offline', offline)
  window.addEventListener('online', online)
  cleanups.push(() => { window.removeEventListener('offline', offline); window.removeEventListener('online', online) })

  const beforeUnload = (event: BeforeUnloadEvent): void => {
    if (canEdit() && (saver.model.dirty || provider.unacked.size > 0)) { // edits the server does not hold yet
      event.preventDefault()
      event.returnValue = ''
    }
  }
  window.addEventListener('beforeunload', beforeUnload)
  cleanups.push(() => window.removeEventListener('beforeunload', beforeUnload))

  // Connect once the local copy is loaded, so that the first sync step 1 already covers it.
  void local.whenSynced.then(() => { if (navigator.onLine) provider.connect() })

  // ---- title from the shared meta map (renames arrive live)
  const onMeta = (): void => {
    const t = meta.get('title')
    if (typeof t === 'string' && t !== '') title.textContent = t
  }
  meta.observe(onMeta)
  cleanups.push(() => meta.unobserve(onMeta))

  // ---- role: read-only note, editability, owner actions
  const roleListeners = new Set<(role: Role) => void>()
  function applyRole (next: Role, changed = false): void {
    role = next
    roleListeners.forEach(fn => fn(next))
    rememberPrdMeta({ id: prd.id, title: prd.title, role })
    view.dispatch({ effects: access.reconfigure(accessExtensions()) })
    readOnlyNote.hidden = canEdit()
    if (canEdit()) readOnlyNote.replaceChildren()
    else readOnlyNote.replaceChildren(h('strong', {}, 'Read-only'), refused ? ' — you no longer have access to this PRD.' : ` — you are a ${role} of this PRD.`)
    toolbar.replaceChildren(role === 'owner'
      ? h('button', { type: 'button', class: 'button', onclick: () => openShareDialog(prd.id, prd.title) }, 'Share')
      : '')
    if (changed) banner.replaceChildren(notice(`Your role on this PRD is now ${role}.`, 'info'))
  }
  applyRole(role)

  // ---- regions
  registerPanel({ id: 'outline', title: 'Outline', region: 'sidebar', order: 10, mount: body => mountOutline(body, ytext, view) })
  registerPanel({ id: 'people', title: 'People here', region: 'panels', order: 10, mount: body => mountPresence(body, provider, username) })
  // Feature panels: each a lazily loaded chunk (src/features/), fetched once the editor is up.
  registerPanel(lazyPanel('ai', 'AI assistant', 20, async () => await import('../features/ai')))
  registerPanel(lazyPanel('history', 'Version history', 30, async () => await import('../features/history')))
  registerPanel(lazyPanel('export', 'Export', 40, async () => await import('../features/export')))
  const panelCtx: PanelContext = {
    prdId: prd.id,
    title: prd.title,
    username,
    role: () => role,
    canEdit,
    onRole: fn => { roleListeners.add(fn); return () => roleListeners.delete(fn) },
    doc,
    ytext,
    view,
    provider
  }
  cleanups.push(mountPanels('sidebar', sidebar, panelCtx), mountPanels('panels', panels, panelCtx))

  return () => cleanups.splice(0).reverse().forEach(fn => fn())
}

function mountOutline (body: HTMLElement, _ytext: Y.Text, view: EditorView): () => void {
  // The headings of the editor's text, rebuilt when their titles or levels change, and the section
  // under the cursor marked aria-current="location" — at most once per frame (followEditor).
  const list = h('ol', { class: 'outline' })
  body.append(list)
  let headings: ReturnType<typeof outline> = []
  let shown: string | null = null
  let buttons: HTMLButtonElement[] = []
  let current = -1
  const jump = (i: number): void => {
    const at = Math.min(headings[i]?.from ?? 0, view.state.doc.length)
    view.dispatch({ selection: { anchor: at }, effects: EditorView.scrollIntoView(at, { y: 'start', yMargin: 16 }) })
    view.focus()
  }
  // ?section=<heading> (a search result): the cursor goes to that heading once it is in the text.
  let wanted = new URLSearchParams(location.search).get('section')
  const rebuild = (): void => {
    headings = outline(view.state.doc.toString())
    if (wanted !== null) {
      const i = headings.findIndex(heading => heading.text.trim() === wanted)
      if (i >= 0) {
        wanted = null
        history.replaceState(history.state, '', location.pathname)
        jump(i)
      }
    }
    const signature = headings.map(heading => `${heading.level} ${heading.text}`).join('\n')
    if (signature === shown) return // same headings: only their offsets moved (jump reads them when clicked)
    shown = signature
    current = -1
    buttons = headings.map((heading, i) => h('button', { type: 'button', class: 'link-button', onclick: () => jump(i) }, heading.text))
    list.replaceChildren(...headings.map((heading, i) => h('li', { class: `outline-l${heading.level}` }, buttons[i])))
    if (headings.length === 0) list.append(h('li', { class: 'hint' }, 'Headings (# Title) appear here.'))
  }
  const mark = (): void => {
    const at = sectionIndexAt(headings, view.state.selection.main.head)
    if (at === current) return
    buttons[current]?.removeAttribute('aria-current')
    buttons[at]?.setAttribute('aria-current', 'location')
    current = at
  }
  rebuild()
  mark()
  return followEditor(view, docChanged => {
    if (docChanged) rebuild()
    mark()
  })
}

function mountPresence (body: HTMLElement, provider: PrdProvider, username: string): () => void {
  const list = h('ul', { class: 'avatars', 'aria-label': 'People on this PRD' })
  body.append(list)
  const awareness = provider.awareness
  const update = (): void => {
    const people = new Map<string, { color: string, self: boolean }>()
    people.set(username, { color: userFor(username).color, self: true })
    awareness?.getStates().forEach((state, clientId) => {
      const user = (state as { user?: { name?: string, color?: string } }).user
      if (clientId === awareness.clientID || typeof user?.name !== 'string') return
      if (!people.has(user.name)) people.set(user.name, { color: user.color ?? '#333', self: false })
    })
    list.replaceChildren(...[...people].map(([name, { color, self }]) => {
      const label = self ? `${name} (you)` : name
      return h('li', { class: 'avatar', title: label, 'aria-label': label, 'data-username': name },
        h('span', { class: 'avatar-dot', style: `background:${color}`, 'aria-hidden': 'true' }, name.slice(0, 1).toUpperCase()),
        h('span', { class: 'avatar-name' }, label))
    }))
  }
  awareness?.on('change', update)
  update()
  return () => awareness?.off('change', update)
}
