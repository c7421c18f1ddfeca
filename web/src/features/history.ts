// The version history panel (issue #17): a PRD's versions newest first, a page at a time; each one
// can be read (its Markdown as text), compared with another (per section, inline or side by side)
// and, for owners and editors, restored; owners and editors can also save a named version. The list
// follows `version-created` notices live. A `git clone` command for the PRD's repository sits below.
// API: docs/versions.md (GET/POST /api/prds/{id}/versions, GET …/versions/{v}, POST …/{v}/restore,
// GET /api/prds/{id}/diff?from=&to=).
import './history.css'
import { request } from '../api'
import { h, messageOf, notice } from '../dom'
import type { PanelContext } from '../panels'
import { openDiffDialog } from './history-diff'
import { badgeEls, confirmRestore, openSaveDialog, openVersionView, timeEl, type DialogParts } from './history-dialogs'
import {
  PAGE_SIZE, appendPage, authorsText, cloneUrl, emptyList, mergeNewest, pageQuery, previousOf, relativeTime,
  tagOf, type ListState, type VersionPage, type VersionRecord, type VersionWithText
} from './history-model'

/** How many of the newest versions are fetched again when a notice says one was made. */
const NEWEST_PAGE = 20
const MARKDOWN_CACHE = 8

let mounts = 0

export function mount (body: HTMLElement, ctx: PanelContext): (() => void) | undefined {
  performance.mark('prdtool:history-mount')
  const uid = `hist${++mounts}`
  const base = `/api/prds/${encodeURIComponent(ctx.prdId)}`
  const cleanups: Array<() => void> = []
  const dialogs = new Set<DialogParts>()
  let disposed = false
  let state: ListState = emptyList()
  const rows = new Map<string, HTMLLIElement>()
  const texts = new Map<string, Promise<VersionWithText>>()

  // ---- layout
  const status = h('div', { class: 'hist-status' })
  const saveButton = h('button', { type: 'button', class: 'button hist-edit-only' }, 'Save version…')
  const compareButton = h('button', { type: 'button', class: 'button' }, 'Compare…')
  const list = h('ol', { class: 'hist-list', id: `${uid}-list`, 'aria-label': 'Versions, newest first' })
  const listState = h('div', { class: 'hist-list-state' })
  const more = h('button', { type: 'button', class: 'button hist-more', hidden: true }, 'Show older versions')
  const scroller = h('div', { class: 'hist-scroll' }, list, listState, more)
  const cloneInput = h('input', { id: `${uid}-clone`, class: 'hist-clone-input', readonly: true, spellcheck: 'false', value: `git clone ${cloneUrl(undefined, location, ctx.prdId)}` })
  const copyButton = h('button', { type: 'button', class: 'button' }, 'Copy')
  const cloneStatus = h('div', { class: 'hist-clone-status' })
  const clone = h('details', { class: 'hist-clone' },
    h('summary', {}, 'Clone with git'),
    h('label', { for: cloneInput.id }, 'Clone command'),
    h('div', { class: 'hist-clone-row' }, cloneInput, copyButton),
    h('p', { class: 'hint' }, 'Every version is a commit tagged v<version>. When git asks for a password, give an API key or your access token (any user name). The repository is read-only.'),
    cloneStatus)
  const root = h('div', { class: 'hist' },
    h('div', { class: 'hist-toolbar' }, saveButton, compareButton),
    status, scroller, clone)
  body.replaceChildren(root)

  const say = (text: string, kind: 'error' | 'info' = 'info'): void => { status.replaceChildren(notice(text, kind)) }

  // ---- roles: restore and save are for owners and editors (policy: edit)
  function applyRole (): void {
    const can = ctx.canEdit()
    root.querySelectorAll<HTMLElement>('.hist-edit-only').forEach(el => { el.hidden = !can })
    if (!can) for (const d of dialogs) if (d.dialog.classList.contains('hist-edit-dialog')) d.close()
  }
  cleanups.push(ctx.onRole(() => applyRole()))

  function track (parts: DialogParts, editOnly = false): DialogParts {
    if (editOnly) parts.dialog.classList.add('hist-edit-dialog')
    dialogs.add(parts)
    parts.dialog.addEventListener('close', () => dialogs.delete(parts))
    return parts
  }

  // ---- versions' text (a few kept: the view and the diff's alignment read them)
  function load (version: string): Promise<VersionWithText> {
    let found = texts.get(version)
    if (found === undefined) {
      found = request<VersionWithText>('GET', `${base}/versions/${encodeURIComponent(version)}`)
      found.catch(() => texts.delete(version))
      texts.set(version, found)
      while (texts.size > MARKDOWN_CACHE) texts.delete(texts.keys().next().value as string)
    }
    return found
  }

  // ---- rows
  const rowId = (version: string): string => `${uid}-v${version.replace(/\./g, '-')}`

  function rowFor (v: VersionRecord): HTMLLIElement {
    const id = rowId(v.version)
    const toggle = h('button', {
      type: 'button', class: 'hist-row', id: `${id}-row`, 'aria-expanded': 'false', 'aria-controls': `${id}-details`
    },
    h('span', { class: 'hist-row-top' }, h('span', { class: 'hist-ver' }, tagOf(v.version)), ...badgeEls(v)),
    h('span', { class: 'hist-summary' }, v.summary),
    h('span', { class: 'hist-meta' }, authorsText(v.authors), ' · ', timeEl(v.created_at)))
    const details = h('div', { class: 'hist-details', id: `${id}-details`, hidden: true })
    const li = h('li', { class: 'hist-item', 'data-version': v.version }, toggle, details)
    toggle.addEventListener('click', () => {
      const open = toggle.getAttribute('aria-expanded') !== 'true'
      toggle.setAttribute('aria-expanded', String(open))
      details.hidden = !open
      li.classList.toggle('hist-open', open)
      if (open) fillDetails(v, details)
    })
    return li
  }

  function fillDetails (v: VersionRecord, details: HTMLElement): void {
    const tag = tagOf(v.version)
    const older = previousOf(state.items, v.version)
    const changes = (v.details ?? []).filter(d => d !== v.summary)
    const view = h('button', { type: 'button', class: 'button', 'aria-label': `View ${tag}` }, 'View')
    const compare = h('button', { type: 'button', class: 'button', 'aria-label': older !== undefined ? `Compare ${tag} with ${tagOf(older.version)}` : `Compare ${tag} with the latest` }, 'Compare')
    const restore = h('button', { type: 'button', class: 'button hist-edit-only', 'aria-label': `Restore ${tag}`, hidden: !ctx.canEdit() }, 'Restore')
    view.addEventListener('click', () => { track(openVersionView(ctx.prdId, v, view, load)) })
    compare.addEventListener('click', () => { void compareFrom(v, compare) })
    restore.addEventListener('click', () => restoreVersion(v, restore))
    details.replaceChildren(...[
      v.message ? h('p', { class: 'hist-message' }, v.message) : null,
      changes.length > 0 ? h('ul', { class: 'hist-change-list', 'aria-label': `Changes in ${tag}` }, ...changes.slice(0, 8).map(d => h('li', {}, d)),
        changes.length > 8 ? h('li', {}, `and ${changes.length - 8} more`) : null) : null,
      v.authors.length > 1 ? h('p', { class: 'hist-muted' }, `Authors: ${v.authors.join(', ')}`) : null,
      v.restored_from ? h('p', { class: 'hist-muted' }, `Restores ${tagOf(v.restored_from)}.`) : null,
      v.archived === true ? h('p', { class: 'hist-muted' }, 'Archived: its text is read from cold storage.') : null,
      h('div', { class: 'hist-row-actions' }, view, compare, restore)
    ].filter((n): n is NonNullable<typeof n> => n !== null))
  }

  async function compareFrom (v: VersionRecord, opener: HTMLElement): Promise<void> {
    let older = previousOf(state.items, v.version)
    if (older === undefined && state.next !== null) { // the version before is on the next page
      await loadMore()
      older = previousOf(state.items, v.version)
    }
    const newest = state.items[0]
    const [from, to] = older !== undefined ? [older.version, v.version] : [v.version, newest?.version ?? v.version]
    track(openDiffDialog({ prdId: ctx.prdId, versions: state.items, from, to, opener, load }))
  }

  function restoreVersion (v: VersionRecord, opener: HTMLElement): void {
    if (!ctx.canEdit()) return
    const { parts, done } = confirmRestore(ctx.prdId, v, opener)
    track(parts, true)
    void done.then(made => {
      if (made === null || disposed) return
      say(`Restored ${tagOf(v.version)}: the document is now ${tagOf(made.version)} (“${made.summary}”). Everyone editing sees it.`)
      void refreshNewest(made.version)
    })
  }

  // ---- the list
  function showListState (): void {
    more.hidden = state.next === null
    if (!state.loaded) return
    listState.replaceChildren(state.items.length === 0
      ? h('p', { class: 'hist-empty' }, 'No versions yet. The first is made when the PRD is created, then one for each significant change; you can also save one by hand.')
      : '')
  }

  function renderAppended (fresh: VersionRecord[]): void {
    const start = performance.now()
    const fragment = document.createDocumentFragment()
    for (const v of fresh) {
      const li = rowFor(v)
      rows.set(v.version, li)
      fragment.append(li)
    }
    list.append(fragment)
    // For web/e2e/history-bench.mjs: how long building the rows took (layout comes after).
    performance.measure('prdtool:history-render', { start, end: performance.now(), detail: { rows: fresh.length } })
  }

  let loadingMore: Promise<void> | null = null
  function loadMore (): Promise<void> {
    loadingMore ??= (async () => {
      const first = !state.loaded
      // (not disabled while loading: a disabled button would drop the keyboard focus)
      more.textContent = 'Loading older versions…'
      if (first) {
        list.setAttribute('aria-busy', 'true')
        listState.replaceChildren(h('p', { class: 'loading' }, 'Loading versions…'))
      }
      try {
        const page = await request<VersionPage>('GET', `${base}/versions${pageQuery(PAGE_SIZE, first ? null : state.next)}`)
        if (disposed) return
        const known = new Set(rows.keys())
        state = appendPage(state, page)
        const fresh = state.items.filter(v => !known.has(v.version))
        const olderThanShown = fresh.every(v => state.items.indexOf(v) >= known.size)
        if (olderThanShown) renderAppended(fresh)
        else rerender()
        listState.replaceChildren()
        if (first) performance.mark('prdtool:history-first-page')
      } catch (error) {
        if (disposed) return
        listState.replaceChildren(notice(`Could not load the versions: ${messageOf(error)}`),
          h('button', { type: 'button', class: 'button', onclick: () => { void loadMore() } }, 'Try again'))
      } finally {
        list.removeAttribute('aria-busy')
        more.textContent = 'Show older versions'
        showListState()
        loadingMore = null
      }
    })()
    return loadingMore
  }
  more.addEventListener('click', () => {
    const count = state.items.length
    void loadMore().then(() => {
      // Keyboard users continue from the first of the versions just loaded (the button moved below them).
      const next = state.items[count]
      if (next !== undefined && (document.activeElement === more || document.activeElement === document.body)) {
        rows.get(next.version)?.querySelector<HTMLElement>('.hist-row')?.focus()
      }
    })
  })

  function rerender (): void {
    const open = new Set([...rows.entries()].filter(([, li]) => li.classList.contains('hist-open')).map(([v]) => v))
    const focused = document.activeElement instanceof HTMLElement && list.contains(document.activeElement)
      ? document.activeElement.closest<HTMLLIElement>('.hist-item')?.dataset.version
      : undefined
    rows.clear()
    list.replaceChildren()
    renderAppended(state.items)
    for (const version of open) rows.get(version)?.querySelector<HTMLButtonElement>('.hist-row')?.click()
    if (focused !== undefined) rows.get(focused)?.querySelector<HTMLElement>('.hist-row')?.focus()
  }

  let refreshing: Promise<void> = Promise.resolve()
  /** The newest versions again (after a notice, a save or a restore); `highlight` marks one. */
  function refreshNewest (highlight?: string): Promise<void> {
    refreshing = refreshing.then(async () => {
      if (disposed) return
      if (!state.loaded) {
        await loadMore()
      } else {
        try {
          const page = await request<VersionPage>('GET', `${base}/versions${pageQuery(NEWEST_PAGE, null)}`)
          if (disposed) return
          const merged = mergeNewest(state, page)
          if (merged.gap) {
            state = emptyList()
            rows.clear()
            list.replaceChildren()
            await loadMore()
          } else {
            const changed = page.items.some(p => { const had = state.items.find(v => v.version === p.version); return had !== undefined && JSON.stringify(had) !== JSON.stringify(p) })
            state = merged.state
            if (changed) {
              rerender()
            } else {
              const fragment = document.createDocumentFragment()
              for (const v of merged.added) {
                const li = rowFor(v)
                rows.set(v.version, li)
                fragment.append(li)
              }
              list.prepend(fragment)
            }
            for (const v of merged.added) flash(v.version)
          }
        } catch (error) {
          if (!disposed) say(`Could not load the newest versions: ${messageOf(error)}`, 'error')
        }
      }
      showListState()
      if (highlight !== undefined) flash(highlight)
    })
    return refreshing
  }

  function flash (version: string): void {
    const li = rows.get(version)
    if (li === undefined) return
    li.classList.remove('hist-new')
    void li.offsetWidth // restart the animation
    li.classList.add('hist-new')
  }

  // Up/Down/Home/End between the versions (one tab stop per version otherwise).
  list.addEventListener('keydown', event => {
    const row = (event.target as HTMLElement).closest<HTMLElement>('.hist-row')
    if (row === null) return
    const all = [...list.querySelectorAll<HTMLElement>('.hist-row')]
    const at = all.indexOf(row)
    const to = event.key === 'ArrowDown' ? at + 1 : event.key === 'ArrowUp' ? at - 1 : event.key === 'Home' ? 0 : event.key === 'End' ? all.length - 1 : null
    if (to === null) return
    event.preventDefault()
    if (to >= all.length && state.next !== null) { void loadMore().then(() => list.querySelectorAll<HTMLElement>('.hist-row')[to]?.focus()); return }
    all[Math.max(0, Math.min(all.length - 1, to))]?.focus()
  })

  // Scrolling to the end of the list loads the next page (the button does it for the keyboard).
  if (typeof IntersectionObserver !== 'undefined') {
    const observer = new IntersectionObserver(entries => {
      if (entries.some(e => e.isIntersecting) && state.loaded && state.next !== null && !more.hidden) void loadMore()
    }, { root: scroller, rootMargin: '0px 0px 120px 0px' })
    observer.observe(more)
    cleanups.push(() => observer.disconnect())
  }

  // ---- toolbar
  saveButton.addEventListener('click', () => {
    if (!ctx.canEdit()) return
    const { parts, done } = openSaveDialog(ctx.prdId, saveButton)
    track(parts, true)
    void done.then(made => {
      if (made === null || disposed) return
      say(`Saved ${tagOf(made.version)}${made.name ? ` “${made.name}”` : ''}.`)
      void refreshNewest(made.version)
    })
  })
  compareButton.addEventListener('click', () => {
    const [newest, previous] = state.items
    if (newest === undefined) return say('There is no version to compare yet.', 'error')
    track(openDiffDialog({ prdId: ctx.prdId, versions: state.items, from: (previous ?? newest).version, to: newest.version, opener: compareButton, load }))
  })

  // ---- clone command
  fetch('/api/config').then(async r => await r.json() as { apiUrl?: string }).then(config => {
    if (!disposed) cloneInput.value = `git clone ${cloneUrl(config.apiUrl, location, ctx.prdId)}`
  }, () => { /* keep this origin's URL */ })
  copyButton.addEventListener('click', () => {
    const text = cloneInput.value
    const fallback = (): void => {
      cloneInput.focus()
      cloneInput.select()
      cloneStatus.replaceChildren(notice('Copying is not allowed here: the command is selected, press Ctrl+C (⌘C) to copy it.', 'info'))
    }
    if (navigator.clipboard?.writeText === undefined) return fallback()
    navigator.clipboard.writeText(text).then(() => {
      cloneStatus.replaceChildren(notice('Copied the clone command.', 'info'))
    }, fallback)
  })
  cloneInput.addEventListener('focus', () => cloneInput.select())

  // ---- live: a version was made (by anyone, including us)
  let noticeTimer: ReturnType<typeof setTimeout> | null = null
  cleanups.push(ctx.provider.on('notice', (frame: { type?: string }) => {
    if (frame.type !== 'version-created') return
    if (noticeTimer !== null) clearTimeout(noticeTimer)
    noticeTimer = setTimeout(() => { noticeTimer = null; void refreshNewest() }, 150) // a burst is one request
  }))
  cleanups.push(() => { if (noticeTimer !== null) clearTimeout(noticeTimer) })

  // Relative times move on.
  const ticker = setInterval(() => {
    const now = Date.now()
    list.querySelectorAll<HTMLTimeElement>('time[data-ms]').forEach(t => { t.textContent = relativeTime(Number(t.dataset.ms), now) })
  }, 30_000)
  cleanups.push(() => clearInterval(ticker))

  applyRole()
  void loadMore()

  return () => {
    disposed = true
    cleanups.splice(0).reverse().forEach(fn => fn())
    for (const d of [...dialogs]) d.close()
    body.replaceChildren()
  }
}
