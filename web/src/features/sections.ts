// The section under the cursor: shared by the outline (current section, in the editor chunk) and the
// AI panel (its default target). Pure helpers over presence.ts's outline(), plus a cheap way to follow
// a CodeMirror view's document and selection (one callback per animation frame at most).
import { Compartment, StateEffect } from '@codemirror/state'
import { EditorView } from '@codemirror/view'
import type { Heading } from '../presence'
import './sections.css'

/** The index of the heading whose section holds `offset` (the last heading starting at or before
 * it; a section runs to the next heading), or -1 before the first heading. Binary search. */
export function sectionIndexAt (headings: readonly Heading[], offset: number): number {
  let lo = 0
  let hi = headings.length - 1
  let found = -1
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    if (headings[mid].from <= offset) {
      found = mid
      lo = mid + 1
    } else {
      hi = mid - 1
    }
  }
  return found
}

/** The document title: the first heading when it is the only level-1 heading (as the server's
 * sections.title_span decides); -1 when there is none. It is not a section one writes into. */
export function titleIndex (headings: readonly Heading[]): number {
  if (headings.length === 0 || headings[0].level !== 1) return -1
  return headings.some((heading, i) => i > 0 && heading.level === 1) ? -1 : 0
}

/** The title of the section under `offset` that an AI job could target (not the document title),
 * or null (before any section, or between the title and the first section). */
export function sectionTitleAt (headings: readonly Heading[], offset: number): string | null {
  const at = sectionIndexAt(headings, offset)
  return at < 0 || at === titleIndex(headings) ? null : headings[at].text
}

/**
 * Calls `fn` at most once per animation frame after the view's document or selection changed
 * (`docChanged` says whether the text did). Returns a cleanup that stops listening.
 */
export function followEditor (view: EditorView, fn: (docChanged: boolean) => void): () => void {
  const slot = new Compartment()
  let frame = 0
  let docChanged = false
  let stopped = false
  const run = (): void => {
    frame = 0
    const changed = docChanged
    docChanged = false
    if (!stopped) fn(changed)
  }
  const listener = EditorView.updateListener.of(update => {
    if (!update.docChanged && !update.selectionSet) return
    docChanged ||= update.docChanged
    if (frame === 0) frame = requestAnimationFrame(run)
  })
  view.dispatch({ effects: StateEffect.appendConfig.of(slot.of(listener)) })
  return () => {
    stopped = true
    cancelAnimationFrame(frame)
    try {
      view.dispatch({ effects: slot.reconfigure([]) })
    } catch { /* the view is already destroyed */ }
  }
}
