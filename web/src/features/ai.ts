// The AI assistant panel (docs/ai.md): ask for a suggestion (prompt, mode, target section — by
// default the section under the cursor), watch it stream, stop it, then approve (optionally edited)
// or reject it. Collaborators see the PRD's suggestions live (ai-suggestion notices), with the
// decisions offered only to those who may take them; viewers and commenters see the list only.
import './ai.css'
import { ApiError, request } from '../api'
import { h, messageOf, notice } from '../dom'
import type { PanelContext } from '../panels'
import { outline } from '../presence'
import {
  GENERATING, MAX_PROMPT_CHARS, MODES, SETTLED, StreamBuffer, defaultTarget, errorText, isInvalid, mayDecide,
  noticeStatus, sectionChoices, statusRank, statusText, validateJob, whatFor, type JobJson, type Mode
} from './ai-model'
import { followEditor } from './sections'

interface Item {
  job: JobJson
  /** The answer as it streams to us (our own jobs only). */
  stream: StreamBuffer | null
  /** The approver's edit of the suggestion (null: not edited). */
  draft: string | null
  problem: string | null
  busy: boolean
  order: number
  el: HTMLLIElement
  out: HTMLElement | null
}

const MAX_ITEMS = 30
const RESYNC_MS = 700

const explain = (error: unknown): string =>
  error instanceof ApiError ? errorText(error.status, error.code, error.message) : messageOf(error)

export function mount (body: HTMLElement, ctx: PanelContext): (() => void) | undefined {
  const me = ctx.username
  const prdPath = `/api/prds/${encodeURIComponent(ctx.prdId)}/ai/jobs`
  const jobPath = (id: string): string => `/api/ai/jobs/${encodeURIComponent(id)}`
  const items = new Map<string, Item>()
  const cleanups: Array<() => void> = []
  let disposed = false

  // ---- announcements (polite): starts, completions, decisions — never each chunk
  const live = h('p', { class: 'ai-sr-only', role: 'status', 'aria-live': 'polite' })
  let liveTimer: ReturnType<typeof setTimeout> | undefined
  const announce = (text: string): void => {
    live.textContent = ''
    clearTimeout(liveTimer)
    liveTimer = setTimeout(() => { live.textContent = text }, 50) // a fresh text is announced even when repeated
  }
  cleanups.push(() => clearTimeout(liveTimer))

  // ---- the form
  const promptEl = h('textarea', { id: 'ai-prompt', class: 'ai-prompt', rows: 4, 'aria-describedby': 'ai-prompt-hint', placeholder: 'e.g. List the main delivery risks with a mitigation each' })
  const modeEl = h('select', { id: 'ai-mode' }, ...MODES.map(m => h('option', { value: m.id }, m.label)))
  const sectionEl = h('select', { id: 'ai-section', 'aria-describedby': 'ai-section-hint' })
  const sectionField = h('div', { class: 'field' },
    h('label', { for: 'ai-section' }, 'Section'), sectionEl,
    h('span', { id: 'ai-section-hint', class: 'ai-small' }, 'Defaults to the section holding your cursor.'))
  const submitEl = h('button', { type: 'submit', class: 'button primary' }, 'Ask the AI')
  const formProblem = h('div', { class: 'ai-form-problem' })
  const form = h('form', { class: 'ai-form', 'aria-labelledby': 'ai-ask-heading', novalidate: true },
    h('h3', { id: 'ai-ask-heading', class: 'ai-heading' }, 'Ask the AI'),
    h('div', { class: 'field' },
      h('label', { for: 'ai-prompt' }, 'What should the AI write?'), promptEl,
      h('span', { id: 'ai-prompt-hint', class: 'ai-small' }, `Ctrl+Enter (⌘+Enter) sends. At most ${MAX_PROMPT_CHARS} characters.`)),
    h('div', { class: 'field' }, h('label', { for: 'ai-mode' }, 'Mode'), modeEl),
    sectionField,
    formProblem,
    h('div', { class: 'ai-actions' }, submitEl))
  const readOnlyNote = h('p', { class: 'hint ai-note' }, 'Only the PRD’s editors and owners can ask the AI or decide about its suggestions.')

  // ---- the suggestions
  const list = h('ul', { class: 'ai-jobs', 'aria-labelledby': 'ai-jobs-heading' })
  const empty = h('p', { class: 'hint' }, 'No suggestions are waiting for review.')
  const listProblem = h('div')
  const formSlot = h('div', { class: 'ai-ask-slot' })
  const jobsHeading = h('h3', { id: 'ai-jobs-heading', class: 'ai-heading', tabindex: -1 }, 'Suggestions')
  body.append(live, formSlot,
    jobsHeading, listProblem, empty, list)

  // ---- section choices follow the document; the default follows the cursor until one picks
  let headings = outline(ctx.view.state.doc.toString())
  let choicesKey = ''
  let picked = false
  const mode = (): Mode => modeEl.value as Mode
  const refreshSections = (docChanged: boolean): void => {
    if (!ctx.canEdit()) return
    if (docChanged) headings = outline(ctx.view.state.doc.toString())
    const choices = sectionChoices(headings, mode())
    const key = `${mode()}\n${choices.existing.join('\n')}\n\n${choices.standard.join('\n')}`
    const keep = sectionEl.value
    if (key !== choicesKey) {
      choicesKey = key
      const groups: HTMLElement[] = [h('option', { value: '' }, 'Choose a section')]
      if (choices.existing.length > 0) groups.push(h('optgroup', { label: 'In this PRD' }, ...choices.existing.map(t => h('option', { value: t }, t))))
      if (choices.standard.length > 0) groups.push(h('optgroup', { label: 'New standard section' }, ...choices.standard.map(t => h('option', { value: t }, t))))
      sectionEl.replaceChildren(...groups)
      const still = [...choices.existing, ...choices.standard].includes(keep)
      if (picked && still) sectionEl.value = keep
      else picked = false
    }
    if (!picked) sectionEl.value = defaultTarget(headings, ctx.view.state.selection.main.head, choices)
    const fill = mode() === 'fill-gaps'
    sectionField.hidden = fill
    sectionEl.disabled = fill
  }
  sectionEl.addEventListener('change', () => { picked = sectionEl.value !== ''; clearInvalid() })
  modeEl.addEventListener('change', () => { refreshSections(false); clearInvalid() })
  promptEl.addEventListener('input', () => { if (promptEl.hasAttribute('aria-invalid')) clearInvalid() })
  cleanups.push(followEditor(ctx.view, refreshSections))

  function clearInvalid (): void {
    for (const el of [promptEl, modeEl, sectionEl]) el.removeAttribute('aria-invalid')
    formProblem.replaceChildren()
  }

  form.addEventListener('keydown', (event: KeyboardEvent) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
      event.preventDefault()
      form.requestSubmit()
    }
  })
  form.addEventListener('submit', event => {
    event.preventDefault()
    void ask()
  })

  let asking = false
  async function ask (): Promise<void> {
    if (asking || !ctx.canEdit()) return
    clearInvalid()
    const checked = validateJob({ prompt: promptEl.value, mode: modeEl.value, section: sectionEl.value })
    if (isInvalid(checked)) {
      const field = checked.field === 'prompt' ? promptEl : checked.field === 'mode' ? modeEl : sectionEl
      field.setAttribute('aria-invalid', 'true')
      formProblem.replaceChildren(notice(checked.message))
      field.focus()
      return
    }
    asking = true
    submitEl.disabled = true
    submitEl.textContent = 'Asking…'
    try {
      const created = await request<{ jobId: string, status?: string, mode?: string, section?: string | null }>('POST', prdPath, checked)
      if (disposed) return
      const item = upsert({ jobId: created.jobId, requester: me, mode: created.mode ?? checked.mode, section: created.section ?? checked.section ?? null, status: created.status ?? 'queued', prompt: checked.prompt, createdAt: Date.now() })
      follow(item)
      item.el.scrollIntoView({ block: 'nearest' }) // the answer streams there (the panel column scrolls)
      picked = false
      announce(`Asking the AI for ${whatFor(item.job.mode, item.job.section)}…`)
    } catch (error) {
      if (disposed) return
      formProblem.replaceChildren(notice(explain(error)))
    } finally {
      asking = false
      submitEl.disabled = false
      submitEl.textContent = 'Ask the AI'
    }
  }

  // ---- the list of suggestions
  function upsert (fields: Partial<JobJson> & { jobId: string }): Item {
    const known = items.get(fields.jobId)
    if (known !== undefined) {
      merge(known, fields)
      return known
    }
    const job: JobJson = { jobId: fields.jobId, requester: '', mode: '', section: null, status: 'queued' }
    const item: Item = { job, stream: null, draft: null, problem: null, busy: false, order: fields.createdAt ?? Date.now(), el: h('li', { class: 'ai-job', tabindex: -1, 'data-order': 0 }), out: null }
    take(item, fields)
    item.el.dataset.order = String(item.order)
    items.set(job.jobId, item)
    // newest first
    const before = [...list.children].find(el => Number((el as HTMLElement).dataset.order) < item.order) ?? null
    list.insertBefore(item.el, before)
    trim()
    render(item)
    return item
  }

  /** Copies the known fields (a status only moves forward: a late answer never undoes a decision). */
  function take (item: Item, fields: Partial<JobJson>): void {
    const incoming = fields.status
    const { status: _ignored, ...rest } = fields
    // older news (e.g. the 202 after the "generating" notice) only fills in what is missing
    const stale = incoming !== undefined && statusRank(incoming) < statusRank(item.job.status)
    const job = item.job as unknown as Record<string, unknown>
    for (const [key, value] of Object.entries(rest)) {
      if (stale && job[key] !== undefined && job[key] !== null && job[key] !== '') continue
      if (value !== undefined && value !== '' && (value !== null || key === 'error' || key === 'decidedBy' || key === 'version')) job[key] = value
    }
    if (incoming !== undefined && !stale) item.job.status = incoming
    if (!GENERATING.has(item.job.status)) item.stream = null // from now on the job's output is the suggestion
  }

  /** Takes what is known of a job and shows it if anything changed; says whether the status did. */
  function merge (item: Item, fields: Partial<JobJson>): boolean {
    const before = item.job.status
    const seen = JSON.stringify(item.job) + String(item.stream !== null)
    take(item, fields)
    if (JSON.stringify(item.job) + String(item.stream !== null) !== seen) render(item)
    return item.job.status !== before
  }

  /** Our own job: its answer streams to us. */
  function follow (item: Item): void {
    if (item.stream !== null || !GENERATING.has(item.job.status)) return
    item.stream = new StreamBuffer()
    render(item)
  }

  function trim (): void {
    if (items.size <= MAX_ITEMS) return
    const settled = [...items.values()].filter(i => SETTLED.has(i.job.status)).sort((a, b) => a.order - b.order)
    for (const old of settled.slice(0, items.size - MAX_ITEMS)) remove(old)
  }

  function remove (item: Item): void {
    items.delete(item.job.jobId)
    item.el.remove()
    updateEmpty()
  }

  function updateEmpty (): void {
    empty.hidden = items.size > 0
  }

  function render (item: Item): void {
    const { job } = item
    const focusedKey = item.el.contains(document.activeElement) ? (document.activeElement as HTMLElement).dataset.key ?? 'card' : null
    const id = job.jobId
    const mine = job.requester === me
    const decide = mayDecide(job, me, ctx.role(), ctx.canEdit())
    const generating = GENERATING.has(job.status)
    const children: Array<Node | null> = []
    children.push(h('p', { class: 'ai-job-head', id: `ai-job-${id}` },
      h('strong', {}, mine ? 'You' : job.requester || 'Someone'), ` asked for ${whatFor(job.mode, job.section)} `,
      h('span', { class: 'ai-badge', 'data-status': job.status }, statusText(job.status))))
    if (job.prompt) children.push(h('p', { class: 'ai-ask' }, `“${job.prompt.length > 160 ? `${job.prompt.slice(0, 160)}…` : job.prompt}”`))

    item.out = null
    const text = item.stream?.text ?? job.output ?? ''
    if (generating) {
      if (item.stream !== null || text !== '') {
        item.out = h('pre', { class: 'ai-output', tabindex: 0, 'aria-busy': 'true', 'data-key': 'output' }, text)
        children.push(item.out)
      } else if (!mine) {
        children.push(h('p', { class: 'ai-small' }, 'The AI is writing; the suggestion appears here when it is done.'))
      }
    } else if (job.status === 'done' && decide) {
      const editId = `ai-edit-${id}`
      const edit = h('textarea', { id: editId, class: 'ai-edit', rows: 8, 'data-key': 'edit' })
      edit.value = item.draft ?? job.output ?? ''
      edit.addEventListener('input', () => { item.draft = edit.value })
      children.push(h('label', { for: editId, class: 'ai-edit-label' }, 'Suggestion (you may edit it before approving)'), edit)
      item.out = edit
    } else if (job.status === 'done') {
      children.push(h('pre', { class: 'ai-output', tabindex: 0, 'data-key': 'output' }, text))
    } else if (text !== '' && job.status !== 'approved') {
      children.push(h('details', { class: 'ai-details' }, h('summary', { 'data-key': 'details' }, job.status === 'failed' || job.status === 'cancelled' ? 'Show the partial text' : 'Show the text'),
        h('pre', { class: 'ai-output', tabindex: 0 }, text)))
    }

    const facts: string[] = []
    if (!generating && job.model) facts.push(`Model: ${job.model}${job.provider && !job.model.includes(job.provider) ? ` (${job.provider})` : ''}`)
    else if (!generating && job.provider) facts.push(`Provider: ${job.provider}`)
    if (!generating && job.usage) facts.push(`${job.usage.totalTokens} tokens`)
    if (job.truncated) facts.push('cut at the length limit')
    if (facts.length > 0) children.push(h('p', { class: 'ai-small ai-facts' }, facts.join(' · ')))
    if (job.status === 'approved') children.push(h('p', { class: 'ai-small' }, `Approved${job.decidedBy ? ` by ${job.decidedBy === me ? 'you' : job.decidedBy}` : ''}${job.version ? `; version ${job.version}` : ''}. The document shows it.`))
    if (job.status === 'rejected') children.push(h('p', { class: 'ai-small' }, `Rejected${job.decidedBy ? ` by ${job.decidedBy === me ? 'you' : job.decidedBy}` : ''}; the document was not changed.`))
    if (job.status === 'cancelled') children.push(h('p', { class: 'ai-small' }, `Stopped${job.decidedBy ? ` by ${job.decidedBy === me ? 'you' : job.decidedBy}` : ''}; nothing was changed.`))
    // (announced once, politely, by finished(): not an alert that repeats with every re-render)
    if (job.status === 'failed') children.push(h('p', { class: 'notice notice-error' }, `The AI could not finish: ${errorText(0, job.error?.code ?? '', job.error?.message ?? 'no reason was given')}`))
    if (item.problem !== null) children.push(notice(item.problem))

    const buttons: HTMLElement[] = []
    const button = (label: string, key: string, onclick: () => void, kind = ''): HTMLButtonElement =>
      h('button', { type: 'button', class: `button ${kind}`.trim(), 'data-key': key, disabled: item.busy, 'aria-describedby': `ai-job-${id}`, onclick }, label)
    if (generating && decide) buttons.push(button('Stop', 'stop', () => { void act(item, 'cancel') }, 'danger'))
    if (job.status === 'done' && decide) {
      buttons.push(button('Approve', 'approve', () => { void act(item, 'approve') }, 'primary'))
      buttons.push(button('Reject', 'reject', () => { void act(item, 'reject') }))
    }
    if (SETTLED.has(job.status)) buttons.push(button('Dismiss', 'dismiss', () => dismiss(item)))
    if (buttons.length > 0) children.push(h('div', { class: 'ai-actions' }, ...buttons))

    item.el.dataset.job = id
    item.el.dataset.status = job.status
    item.el.setAttribute('aria-labelledby', `ai-job-${id}`)
    item.el.replaceChildren(...children.filter((c): c is Node => c !== null))
    if (focusedKey !== null) {
      const again = item.el.querySelector<HTMLElement>(`[data-key="${focusedKey}"]:not([disabled])`)
      ;(again ?? item.el).focus()
    }
    updateEmpty()
  }

  function dismiss (item: Item): void {
    const next = (item.el.nextElementSibling ?? item.el.previousElementSibling) as HTMLElement | null
    remove(item)
    ;(next ?? jobsHeading).focus()
  }

  // Streamed text reaches the page once per frame (not once per chunk).
  const dirty = new Set<Item>()
  let frame = 0
  const paint = (): void => {
    frame = 0
    for (const item of dirty) {
      const out = item.out
      if (out === null || item.stream === null || !(out instanceof HTMLPreElement)) continue
      const atEnd = out.scrollTop + out.clientHeight >= out.scrollHeight - 8
      out.textContent = item.stream.text
      if (atEnd) out.scrollTop = out.scrollHeight
    }
    dirty.clear()
  }
  const schedulePaint = (item: Item): void => {
    dirty.add(item)
    if (frame === 0) frame = requestAnimationFrame(paint)
  }
  cleanups.push(() => cancelAnimationFrame(frame))

  // ---- reading jobs from the server
  const reading = new Map<string, Promise<void>>()
  const resyncTimers = new Map<string, ReturnType<typeof setTimeout>>()
  cleanups.push(() => resyncTimers.forEach(t => clearTimeout(t)))

  /** Reads a job again (its output so far, or its final suggestion); one read per job at a time. */
  async function refresh (id: string): Promise<void> {
    const running = reading.get(id)
    if (running !== undefined) return await running
    const read = (async () => {
      try {
        const job = await request<JobJson>('GET', jobPath(id))
        const item = items.get(id)
        if (disposed || item === undefined) return
        if (item.stream !== null && GENERATING.has(job.status)) {
          if (item.stream.restore(job.output ?? '', job.seq ?? 0)) schedulePaint(item)
          const { output: _o, ...rest } = job
          merge(item, rest)
          if (item.stream?.gap === true) resyncLater(id)
        } else {
          const wasGenerating = GENERATING.has(item.job.status)
          if (merge(item, job) && wasGenerating) finished(item)
        }
      } catch (error) {
        const item = items.get(id)
        if (disposed || item === undefined) return
        if (error instanceof ApiError && error.status === 404) return remove(item)
        item.problem = explain(error)
        render(item)
      } finally {
        reading.delete(id)
      }
    })()
    reading.set(id, read)
    return await read
  }

  function resyncLater (id: string): void {
    if (resyncTimers.has(id)) return
    resyncTimers.set(id, setTimeout(() => {
      resyncTimers.delete(id)
      const item = items.get(id)
      if (item !== undefined && GENERATING.has(item.job.status)) void refresh(id)
    }, RESYNC_MS))
  }

  /** Says how a job ended (once, when it leaves generating). */
  function finished (item: Item): void {
    const { job } = item
    const what = whatFor(job.mode, job.section)
    const mine = job.requester === me
    if (job.status === 'done') {
      announce(mine ? `The AI has written ${what}: review it, then approve or reject it.` : `${job.requester}’s suggestion (${what}) is waiting for review.`)
    } else if (job.status === 'cancelled') {
      announce(`${mine ? 'Your' : `${job.requester}’s`} request for ${what} was stopped.`)
    } else if (job.status === 'failed') {
      announce(`The AI could not finish ${what}: ${job.error?.message ?? 'no reason was given'}.`)
    }
  }

  async function loadPending (): Promise<void> {
    try {
      const { items: found } = await request<{ items: JobJson[] }>('GET', `${prdPath}?status=pending`)
      if (disposed) return
      listProblem.replaceChildren()
      for (const job of found) upsert(job)
    } catch (error) {
      if (disposed) return
      listProblem.replaceChildren(notice(`The suggestions could not be loaded: ${explain(error)}`))
    }
  }

  // ---- decisions
  async function act (item: Item, action: 'approve' | 'reject' | 'cancel'): Promise<void> {
    if (item.busy) return
    const { job } = item
    item.busy = true
    item.problem = null
    render(item)
    const edited = action === 'approve' && item.draft !== null && item.draft !== (job.output ?? '')
    try {
      const answer = await request<JobJson>('POST', `${jobPath(job.jobId)}/${action}`, edited ? { text: item.draft } : undefined)
      if (disposed) return
      item.busy = false
      item.draft = null
      // always shown again: the buttons were disabled while busy, and the answer may add nothing new
      // (a frame or a read may have brought the settled job first)
      take(item, answer)
      render(item)
      const what = whatFor(job.mode, job.section)
      if (action === 'approve') announce(`Approved ${what}: the document now shows it.`)
      if (action === 'reject') announce(`Rejected ${what}; the document was not changed.`)
      if (action === 'cancel') announce(`Stopped ${what}; nothing was changed.`)
    } catch (error) {
      if (disposed) return
      item.busy = false
      item.problem = explain(error)
      render(item)
      if (error instanceof ApiError && (error.code === 'already_decided' || error.code === 'job_state')) void refresh(job.jobId)
    }
  }

  // ---- frames: our answers as they stream, and everyone's suggestions
  cleanups.push(ctx.provider.on('ai', (frame: { job?: unknown, event?: unknown, text?: unknown, seq?: unknown, code?: unknown, message?: unknown, usage?: JobJson['usage'] }) => {
    if (typeof frame.job !== 'string' || frame.job === '') return
    const id = frame.job
    let item = items.get(id)
    if (item === undefined) { // one of ours we did not start here (another tab, or before a reload)
      item = upsert({ jobId: id, requester: me, status: 'running' })
      void refresh(id)
    }
    if (frame.event === 'chunk' && typeof frame.text === 'string' && typeof frame.seq === 'number') {
      if (!GENERATING.has(item.job.status)) return
      if (item.job.status === 'queued') merge(item, { status: 'running' })
      follow(item)
      const result = item.stream!.push(frame.seq, frame.text)
      if (result === 'gap') resyncLater(id)
      if (result !== 'duplicate') schedulePaint(item)
    } else if (frame.event === 'done') {
      if (frame.usage) item.job.usage = frame.usage
      void refresh(id) // the suggestion as stored (cleaned of a wrapping fence), with model and usage
    } else if (frame.event === 'error') {
      const cancelled = frame.code === 'cancelled'
      const wasGenerating = GENERATING.has(item.job.status)
      const changed = merge(item, {
        status: cancelled ? 'cancelled' : 'failed',
        output: item.stream?.text ?? item.job.output,
        error: cancelled ? null : { code: String(frame.code ?? 'failed'), message: typeof frame.message === 'string' ? frame.message : null }
      })
      if (changed && wasGenerating) finished(item)
      void refresh(id)
    }
  }))

  cleanups.push(ctx.provider.on('notice', (frame: { type?: unknown, job?: unknown, status?: unknown, mode?: unknown, section?: unknown, by?: unknown, decidedBy?: unknown, version?: unknown }) => {
    if (frame.type !== 'ai-suggestion' || typeof frame.job !== 'string') return
    const status = noticeStatus(frame.status)
    if (status === null) return
    const id = frame.job
    const fields: Partial<JobJson> & { jobId: string } = {
      jobId: id,
      status,
      requester: typeof frame.by === 'string' ? frame.by : undefined,
      mode: typeof frame.mode === 'string' ? frame.mode : undefined,
      section: typeof frame.section === 'string' ? frame.section : undefined,
      decidedBy: typeof frame.decidedBy === 'string' ? frame.decidedBy : undefined,
      version: typeof frame.version === 'string' ? frame.version : undefined
    }
    let item = items.get(id)
    if (item === undefined) {
      if (SETTLED.has(status)) return // decided before we knew of it
      // A pending one shows once its text is read (the notice does not carry it).
      item = upsert({ ...fields, status: 'running' })
      if (status === 'done') void refresh(id)
      else if (item.job.requester !== me) announce(`${item.job.requester} asked the AI for ${whatFor(item.job.mode, item.job.section)}.`)
      return
    }
    if (status === 'done') return void refresh(id) // the read moves it on (and says so)
    const wasGenerating = GENERATING.has(item.job.status)
    if (!merge(item, fields)) return
    const what = whatFor(item.job.mode, item.job.section)
    const by = frame.decidedBy === me ? 'you' : typeof frame.decidedBy === 'string' ? frame.decidedBy : 'someone'
    if (wasGenerating) finished(item)
    else if (status === 'approved') announce(`${what[0].toUpperCase()}${what.slice(1)} was approved by ${by}; the document shows it.`)
    else if (status === 'rejected') announce(`${what[0].toUpperCase()}${what.slice(1)} was rejected by ${by}.`)
  }))

  // After a reconnect: what we missed while disconnected — the list, and where each open job got to.
  const catchUp = (): void => {
    void loadPending()
    for (const [id, item] of items) if (statusRank(item.job.status) < 4) void refresh(id)
  }
  let missed = false
  cleanups.push(ctx.provider.on('status', ({ status }: { status: string }) => { if (status === 'disconnected') missed = true }))
  cleanups.push(ctx.provider.on('synced', () => {
    if (!missed) return
    missed = false
    catchUp()
  }))

  // ---- the role decides what is offered
  const applyRole = (): void => {
    const canAsk = ctx.canEdit()
    // viewers and commenters get no AI controls at all: the form is not in the page for them
    if (formSlot.firstChild !== (canAsk ? form : readOnlyNote)) formSlot.replaceChildren(canAsk ? form : readOnlyNote)
    if (canAsk) refreshSections(true)
    for (const item of items.values()) render(item)
  }
  cleanups.push(ctx.onRole(applyRole))
  applyRole()
  catchUp()

  return () => {
    disposed = true
    cleanups.splice(0).reverse().forEach(fn => fn())
  }
}
