// The history panel's dialogs (native <dialog>: Esc closes, focus goes back to the opener): a
// version's text read-only, the restore confirmation, and saving a named version.
import { ApiError, request } from '../api'
import { h, messageOf, notice } from '../dom'
import {
  MESSAGE_MAX, NAME_MAX, absoluteTime, authorsText, badgesOf, relativeTime, saveFormError, tagOf,
  type VersionRecord, type VersionWithText
} from './history-model'

let dialogs = 0

export interface DialogParts {
  dialog: HTMLDialogElement
  /** The dialog's body, between its heading row and its actions. */
  body: HTMLElement
  actions: HTMLElement
  close: () => void
}

/**
 * A modal dialog with a heading and a Close button; removed from the page once closed, focus back on
 * `opener` (the browser does it too, but not when the opener was re-rendered meanwhile).
 */
export function openDialog (opts: { title: string, className?: string, opener?: HTMLElement | null, role?: 'dialog' | 'alertdialog', closeText?: string, onClose?: () => void }): DialogParts {
  const id = `hist-dialog-${++dialogs}`
  const body = h('div', { class: 'hist-dialog-body', id: `${id}-body` })
  const actions = h('div', { class: 'dialog-actions hist-dialog-actions' })
  const dialog = h('dialog', {
    class: `hist-dialog ${opts.className ?? ''}`,
    'aria-labelledby': `${id}-heading`,
    role: opts.role === 'alertdialog' ? 'alertdialog' : null,
    'aria-describedby': opts.role === 'alertdialog' ? `${id}-body` : null
  },
  h('div', { class: 'hist-dialog-head' }, h('h2', { id: `${id}-heading` }, opts.title)),
  body, actions)
  const close = (): void => { if (dialog.open) dialog.close() }
  actions.append(h('button', { type: 'button', class: 'button', onclick: close }, opts.closeText ?? 'Close'))
  const opener = opts.opener ?? (document.activeElement instanceof HTMLElement ? document.activeElement : null)
  dialog.addEventListener('close', () => {
    dialog.remove()
    opts.onClose?.()
    if (opener?.isConnected === true) opener.focus()
  })
  document.body.append(dialog)
  dialog.showModal()
  return { dialog, body, actions, close }
}

export const timeEl = (ms: number, now = Date.now()): HTMLTimeElement =>
  h('time', { datetime: new Date(ms).toISOString(), title: absoluteTime(ms), 'data-ms': ms }, relativeTime(ms, now))

export function badgeEls (v: VersionRecord): HTMLElement[] {
  return badgesOf(v).map(b => h('span', { class: `hist-badge hist-badge-${b.kind}`, title: b.title }, b.text))
}

/** What a version is, in a few lines: badges, who and when, the message and the change list. */
export function versionFacts (v: VersionRecord): HTMLElement {
  const details = (v.details ?? []).filter(d => d !== v.summary)
  return h('div', { class: 'hist-facts' },
    h('p', { class: 'hist-facts-line' }, ...badgeEls(v), ' ', h('span', {}, v.summary)),
    h('p', { class: 'hist-facts-line hist-muted' }, `By ${v.authors.length > 0 ? v.authors.join(', ') : authorsText([])}, `, timeEl(v.created_at),
      ` (${absoluteTime(v.created_at)})`),
    v.restored_from ? h('p', { class: 'hist-facts-line' }, `Restores ${tagOf(v.restored_from)}.`) : null,
    v.message ? h('p', { class: 'hist-message' }, v.message) : null,
    details.length > 0 ? h('ul', { class: 'hist-change-list', 'aria-label': `Changes in ${tagOf(v.version)}` }, ...details.map(d => h('li', {}, d))) : null)
}

/** A version's Markdown, read-only, as text (never rendered as HTML). */
export function openVersionView (prdId: string, v: VersionRecord, opener: HTMLElement | null,
  load: (version: string) => Promise<VersionWithText>): DialogParts {
  const parts = openDialog({ title: `${tagOf(v.version)} — read-only`, className: 'hist-view-dialog', opener })
  const status = h('p', { class: 'loading', role: 'status' }, `Loading ${tagOf(v.version)}…`)
  parts.body.append(versionFacts(v), status)
  parts.body.setAttribute('aria-busy', 'true')
  load(v.version).then(full => {
    parts.body.removeAttribute('aria-busy')
    status.remove()
    const text = h('pre', { class: 'hist-md', tabindex: '0', role: 'region', 'aria-label': `Markdown of ${tagOf(v.version)}` })
    text.textContent = full.markdown === '' ? '(empty)' : full.markdown
    parts.body.append(text)
  }, error => {
    parts.body.removeAttribute('aria-busy')
    status.replaceWith(notice(`Could not load ${tagOf(v.version)}: ${messageOf(error)}`))
  })
  return parts
}

const restoreError = (error: unknown, tag: string): string =>
  error instanceof ApiError && (error.status === 403 || error.code === 'permission_denied')
    ? `You may not restore versions of this PRD: only its owners and editors may. (${error.message})`
    : `Could not restore ${tag}: ${messageOf(error)}`

/** "Restore v1.0.0?": on confirmation, POST …/restore; resolves with the new version (null if cancelled). */
export function confirmRestore (prdId: string, v: VersionRecord, opener: HTMLElement | null): { parts: DialogParts, done: Promise<VersionRecord | null> } {
  const tag = tagOf(v.version)
  let resolveDone: (value: VersionRecord | null) => void = () => {}
  const done = new Promise<VersionRecord | null>(resolve => { resolveDone = resolve })
  let result: VersionRecord | null = null
  const parts = openDialog({
    title: `Restore ${tag}?`,
    className: 'hist-confirm-dialog',
    opener,
    role: 'alertdialog',
    closeText: 'Cancel',
    onClose: () => resolveDone(result)
  })
  const status = h('div', { class: 'hist-dialog-status' })
  parts.body.append(
    h('p', {}, `The document will become what it was at ${tag} (“${v.summary}”, by ${authorsText(v.authors)}, `,
      timeEl(v.created_at), '). Everyone editing sees the change at once.'),
    h('p', {}, `Nothing is lost: the restore is saved as a new version, and the versions after ${tag} stay in the history.`),
    status)
  const confirm = h('button', { type: 'button', class: 'button danger' }, `Restore ${tag}`)
  const cancel = parts.actions.querySelector('button')
  parts.actions.append(confirm)
  cancel?.focus() // the safe choice first
  confirm.addEventListener('click', () => {
    confirm.disabled = true
    confirm.textContent = `Restoring ${tag}…`
    parts.body.setAttribute('aria-busy', 'true')
    status.replaceChildren(h('p', { class: 'loading', role: 'status' }, `Restoring ${tag}…`))
    request<VersionRecord>('POST', `/api/prds/${encodeURIComponent(prdId)}/versions/${encodeURIComponent(v.version)}/restore`).then(made => {
      result = made
      parts.close()
    }, error => {
      parts.body.removeAttribute('aria-busy')
      confirm.disabled = false
      confirm.textContent = `Restore ${tag}`
      status.replaceChildren(notice(restoreError(error, tag)))
    })
  })
  return { parts, done }
}

/** "Save a version": a name and a message, both optional; resolves with the version made (null if cancelled). */
export function openSaveDialog (prdId: string, opener: HTMLElement | null): { parts: DialogParts, done: Promise<VersionRecord | null> } {
  let resolveDone: (value: VersionRecord | null) => void = () => {}
  const done = new Promise<VersionRecord | null>(resolve => { resolveDone = resolve })
  let result: VersionRecord | null = null
  const parts = openDialog({ title: 'Save a version', className: 'hist-save-dialog', opener, closeText: 'Cancel', onClose: () => resolveDone(result) })
  const uid = parts.dialog.getAttribute('aria-labelledby') ?? 'hist-save'
  const name = h('input', { id: `${uid}-name`, maxlength: NAME_MAX, autocomplete: 'off', 'aria-describedby': `${uid}-name-hint` })
  const message = h('textarea', { id: `${uid}-message`, maxlength: MESSAGE_MAX, rows: 4 })
  const status = h('div', { class: 'hist-dialog-status' })
  const submit = h('button', { type: 'submit', class: 'button primary' }, 'Save version')
  const form = h('form', { class: 'hist-save-form' },
    h('p', { class: 'hint' }, 'Makes a version of the document as it is now, even without changes since the last one.'),
    h('div', { class: 'field' }, h('label', { for: name.id }, 'Name (optional)'), name,
      h('p', { class: 'hint', id: `${uid}-name-hint` }, 'For example “Sent for review”. It starts the version’s summary.')),
    h('div', { class: 'field' }, h('label', { for: message.id }, 'Message (optional)'), message),
    status,
    h('div', { class: 'hist-form-actions' }, submit))
  parts.body.append(form)
  name.focus()
  form.addEventListener('submit', event => {
    event.preventDefault()
    const n = name.value.trim()
    const m = message.value.trim()
    const problem = saveFormError(n, m)
    if (problem !== null) {
      status.replaceChildren(notice(problem))
      return
    }
    submit.disabled = true
    submit.textContent = 'Saving…'
    status.replaceChildren(h('p', { class: 'loading', role: 'status' }, 'Saving a version…'))
    const body: Record<string, string> = {}
    if (n !== '') body.name = n
    if (m !== '') body.message = m
    request<VersionRecord>('POST', `/api/prds/${encodeURIComponent(prdId)}/versions`, body).then(made => {
      result = made
      parts.close()
    }, error => {
      submit.disabled = false
      submit.textContent = 'Save version'
      status.replaceChildren(notice(error instanceof ApiError && error.status === 403
        ? 'You may not save versions of this PRD: only its owners and editors may.'
        : `Could not save a version: ${messageOf(error)}`))
    })
  })
  return { parts, done }
}
