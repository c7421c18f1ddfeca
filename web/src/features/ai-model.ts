// The AI panel's pure parts (unit-tested in node): the streamed answer in seq order, the form's
// choices, default target and validation, and words for statuses and errors. See docs/ai.md.
import type { Heading } from '../presence'
import { sectionTitleAt, titleIndex } from './sections'

export const MODES = [
  { id: 'draft', label: 'Draft a section', phrase: 'a draft of' },
  { id: 'rewrite', label: 'Rewrite a section', phrase: 'a rewrite of' },
  { id: 'expand', label: 'Expand a section', phrase: 'an expansion of' },
  { id: 'summarize', label: 'Summarize a section', phrase: 'a summary of' },
  { id: 'fill-gaps', label: 'Fill every missing section', phrase: 'the missing sections' }
] as const
export type Mode = typeof MODES[number]['id']

/** The standard PRD sections one may draft when missing (shared/prdtool/ai/sections.py, STANDARD_SCHEMA). */
export const STANDARD_SECTIONS = ['Overview', 'Problem', 'Target users', 'Goals', 'Non-goals', 'User stories',
  'Requirements', 'Success metrics', 'Risks', 'Timeline', 'Open questions']

/** The server's default AI_MAX_PROMPT_CHARS (it answers 413 beyond its own setting). */
export const MAX_PROMPT_CHARS = 4000

// ---------------------------------------------------------------------------- the stream

export type PushResult = 'appended' | 'duplicate' | 'gap'

/**
 * The requester's answer as it streams: chunks appended in `seq` order (from 1). A duplicate
 * (seq already held) is ignored; a chunk beyond the next one is held back and reported as a gap,
 * which the caller fills by reading the job (`restore` with its checkpointed output and seq).
 */
export class StreamBuffer {
  text = ''
  seq = 0
  private readonly ahead = new Map<number, string>()

  push (seq: number, text: string): PushResult {
    if (!Number.isInteger(seq) || seq <= this.seq || this.ahead.has(seq)) return 'duplicate'
    if (seq > this.seq + 1) {
      this.ahead.set(seq, text)
      return 'gap'
    }
    this.text += text
    this.seq = seq
    this.drain()
    return 'appended'
  }

  /** A snapshot (the job's `output` up to `seq`): taken when it is not behind what we hold. */
  restore (output: string, seq: number): boolean {
    if (!Number.isInteger(seq) || seq < this.seq) return false
    const changed = seq !== this.seq || output !== this.text
    this.text = output
    this.seq = seq
    this.drain()
    return changed
  }

  /** Are chunks held back, waiting for a missing one? */
  get gap (): boolean { return this.ahead.size > 0 }

  private drain (): void {
    for (const held of [...this.ahead.keys()]) if (held <= this.seq) this.ahead.delete(held)
    for (let next = this.ahead.get(this.seq + 1); next !== undefined; next = this.ahead.get(this.seq + 1)) {
      this.ahead.delete(this.seq + 1)
      this.text += next
      this.seq += 1
    }
  }
}

// ---------------------------------------------------------------------------- the form

const compact = (title: string): string =>
  title.normalize('NFKC').toLowerCase().replace(/^\s*\d+(?:\.\d+)*[.):]?\s+/, '').replace(/[\W_]+/gu, '')

export interface SectionChoices {
  /** The PRD's sections (not its title), each title once, in document order. */
  existing: string[]
  /** Standard sections the PRD lacks (mode draft only). */
  standard: string[]
}

export function sectionChoices (headings: readonly Heading[], mode: Mode): SectionChoices {
  if (mode === 'fill-gaps') return { existing: [], standard: [] }
  const title = titleIndex(headings)
  const seen = new Set<string>()
  const existing: string[] = []
  headings.forEach((heading, i) => {
    const key = heading.text.trim().toLowerCase()
    if (i === title || key === '' || seen.has(key)) return
    seen.add(key)
    existing.push(heading.text.trim())
  })
  if (mode !== 'draft') return { existing, standard: [] }
  const have = existing.map(compact)
  // "Risks and mitigations" already is the risks section: "Risks" is not offered as a new one.
  const standard = STANDARD_SECTIONS.filter(name => {
    const key = compact(name)
    return !have.some(h => h === key || h.startsWith(key))
  })
  return { existing, standard }
}

/** The target a new job defaults to: the section under the cursor, when it is one of the choices. */
export function defaultTarget (headings: readonly Heading[], offset: number, choices: SectionChoices): string {
  const title = sectionTitleAt(headings, offset)?.trim() ?? null
  return title !== null && choices.existing.includes(title) ? title : ''
}

export interface JobRequest { prompt: string, mode: Mode, section?: string }
export type Invalid = { field: 'prompt' | 'mode' | 'section', message: string }

/** What the form would send, or what is wrong with it (in words). */
export function validateJob (input: { prompt: string, mode: string, section: string },
  maxPromptChars = MAX_PROMPT_CHARS): JobRequest | Invalid {
  const mode = MODES.find(m => m.id === input.mode)?.id
  if (mode === undefined) return { field: 'mode', message: 'Choose what the AI should do.' }
  if (input.prompt.trim() === '') return { field: 'prompt', message: 'Write what you want the AI to do.' }
  if (input.prompt.length > maxPromptChars) {
    return { field: 'prompt', message: `Your request has ${input.prompt.length} characters; at most ${maxPromptChars} are accepted. Shorten it.` }
  }
  if (mode === 'fill-gaps') return { prompt: input.prompt, mode }
  const section = input.section.trim()
  if (section === '') return { field: 'section', message: 'Choose the section the AI should write.' }
  return { prompt: input.prompt, mode, section }
}

export const isInvalid = (value: JobRequest | Invalid): value is Invalid => 'field' in value

// ---------------------------------------------------------------------------- jobs in words

/** A job as GET /api/ai/jobs/{id} and the list answer it (docs/ai.md). */
export interface JobJson {
  jobId: string
  requester: string
  mode: string
  section: string | null
  status: string
  prompt?: string
  output?: string
  seq?: number
  provider?: string | null
  model?: string | null
  usage?: { inputTokens: number, outputTokens: number, totalTokens: number } | null
  truncated?: boolean
  error?: { code: string, message: string | null } | null
  decidedBy?: string | null
  version?: string | null
  createdAt?: number
}

export const GENERATING = new Set(['queued', 'running'])
export const SETTLED = new Set(['approved', 'rejected', 'cancelled', 'failed'])

/** Where a status is in a job's life: a job only moves forward (a late frame or answer never undoes a decision). */
export function statusRank (status: string): number {
  if (status === 'queued') return 0
  if (status === 'running') return 1
  if (status === 'done') return 2
  if (status === 'applying') return 3
  return SETTLED.has(status) ? 4 : -1
}

/** The job status an `ai-suggestion` notice's status means. */
export function noticeStatus (status: unknown): string | null {
  if (status === 'generating') return 'running'
  if (status === 'pending') return 'done'
  return typeof status === 'string' && SETTLED.has(status) ? status : null
}

const STATUS_TEXT: Record<string, string> = {
  queued: 'Queued',
  running: 'Writing…',
  done: 'Pending review',
  applying: 'Applying…',
  approved: 'Approved',
  rejected: 'Rejected',
  cancelled: 'Cancelled',
  failed: 'Failed'
}
export const statusText = (status: string): string => STATUS_TEXT[status] ?? status

/** "a draft of “Risks”", "the missing sections". */
export function whatFor (mode: string, section: string | null | undefined): string {
  const phrase = MODES.find(m => m.id === mode)?.phrase ?? 'a suggestion for'
  if (mode === 'fill-gaps') return phrase
  return section ? `${phrase} “${section}”` : phrase.replace(/ of$/, '')
}

/** May this person stop, approve or reject the job here? Its requester or a PRD owner, with edit rights. */
export const mayDecide = (job: Pick<JobJson, 'requester'>, me: string, role: string, canEdit: boolean): boolean =>
  canEdit && (job.requester === me || role === 'owner')

const sentence = (text: string): string => {
  const t = text.trim()
  if (t === '') return t
  return t[0].toUpperCase() + t.slice(1) + (/[.!?)]$/.test(t) ? '' : '.')
}

const ADVICE: Record<string, string> = {
  section_conflict: 'You can reject this suggestion, or ask the AI again.',
  prompt_too_large: 'Shorten your request and send it again.',
  job_state: 'The list has been refreshed.',
  already_decided: 'The list has been refreshed.'
}

/** An API error about AI jobs in words, with what to do about it. */
export function errorText (status: number, code: string, message: string): string {
  let text = sentence(message)
  if (status === 403 && code !== 'not_your_job') text = 'Your role on this PRD does not allow this.'
  if (status === 404) text = 'This suggestion or PRD no longer exists, or you no longer have access to it.'
  const advice = ADVICE[code]
  return advice === undefined ? text : `${text} ${advice}`
}
