// Search-as-you-type on the PRD list (issue #18): a search box above the list whose answers, from
// GET /api/search, show in a listbox under it (the WAI-ARIA combobox pattern: the focus stays in
// the box, aria-activedescendant names the active option). Typing waits DEBOUNCE_MS, aborts the
// request in flight and drops any answer but the latest's; under MIN_QUERY_CHARS nothing is asked
// and the plain list shows. Snippets are user content: text nodes and <mark>, never HTML.
//
// A lazily loaded chunk: screens/list.ts renders the box (and loads search.css with the first
// screen) and imports this module when the box is first focused ("/" on the page focuses it), so
// the list itself loads nothing more. The pure parts are search-model.ts (unit-tested).
import { getResponse } from '../api'
import { h, messageOf } from '../dom'
import {
  DEBOUNCE_MS, LatestOnly, MODES, countText, isMode, moveActive, parseAnswer, problemOf, queryState, resultPath,
  searchPath, versionLabel, type SearchResult
} from './search-model'

export interface SearchOptions {
  /** Opens a path of this site (the app's router). */
  navigate: (path: string) => void
}

/**
 * Makes `input` (the list's search box, inside `host`) a combobox with its results: adds the mode,
 * "Include past versions", the status line and the listbox to `host`. Text typed before this chunk
 * arrived is searched at once. Returns a cleanup (the request in flight and the timers stop).
 */
export function mountSearch (host: HTMLElement, input: HTMLInputElement, options: SearchOptions): () => void {
  const uid = input.id === '' ? (input.id = 'prd-search') : input.id
  const listId = `${uid}-results`
  for (const [name, value] of Object.entries({
    role: 'combobox',
    'aria-expanded': 'false',
    'aria-controls': listId,
    'aria-autocomplete': 'list',
    'aria-describedby': `${uid}-hint`,
    spellcheck: 'false',
    enterkeyhint: 'search'
  })) input.setAttribute(name, value)
  const mode = h('select', { id: `${uid}-mode` }, ...MODES.map(m => h('option', { value: m.id }, m.label)))
  const versions = h('input', { type: 'checkbox', id: `${uid}-versions` })
  const status = h('p', { class: 'search-status', role: 'status', 'aria-live': 'polite', 'aria-atomic': 'true' })
  const listbox = h('ul', { id: listId, class: 'search-results', role: 'listbox', 'aria-label': 'Search results', hidden: true })
  host.append(
    h('div', { class: 'field search-mode' }, h('label', { for: `${uid}-mode` }, 'Match'), mode),
    h('div', { class: 'search-options' },
      versions, h('label', { for: `${uid}-versions` }, 'Include past versions'),
      h('span', { class: 'hint', id: `${uid}-hint` }, 'Press / to search, the arrow keys to choose a result, Enter to open it, Esc to clear.')),
    status,
    listbox)
  host.classList.add('search-ready')

  const latest = new LatestOnly()
  let controller: AbortController | null = null
  let debounce: ReturnType<typeof setTimeout> | null = null
  let retry: ReturnType<typeof setTimeout> | null = null
  let results: SearchResult[] = []
  let active = -1
  let disposed = false

  const say = (text: string, kind: 'info' | 'error' = 'info'): void => {
    status.textContent = text
    status.dataset.kind = kind
  }
  const stopTimers = (): void => {
    if (debounce !== null) clearTimeout(debounce)
    if (retry !== null) clearTimeout(retry)
    debounce = retry = null
  }
  /** Whatever is in flight is forgotten: aborted, and its answer (if it still comes) ignored. */
  const forget = (): void => {
    latest.cancel()
    controller?.abort()
    controller = null
  }
  const setBusy = (busy: boolean): void => {
    if (busy) listbox.setAttribute('aria-busy', 'true')
    else listbox.removeAttribute('aria-busy')
    host.classList.toggle('search-busy', busy)
  }

  function setActive (index: number): void {
    active = index
    const items = listbox.children
    for (let i = 0; i < items.length; i++) items[i].setAttribute('aria-selected', String(i === active))
    const option = active >= 0 ? items[active] as HTMLElement | undefined : undefined
    if (option === undefined) input.removeAttribute('aria-activedescendant')
    else {
      input.setAttribute('aria-activedescendant', option.id)
      option.scrollIntoView?.({ block: 'nearest' })
    }
  }

  function close (): void {
    results = []
    listbox.replaceChildren()
    listbox.hidden = true
    input.setAttribute('aria-expanded', 'false')
    setActive(-1)
    setBusy(false)
    host.classList.remove('search-open')
  }

  function option (result: SearchResult, index: number): HTMLElement {
    const badge = versionLabel(result.version)
    const snippet = h('span', { class: 'search-snippet' },
      ...result.snippet.map(part => part.highlight ? h('mark', {}, part.text) : document.createTextNode(part.text)))
    const item = h('li', { id: `${listId}-${index}`, class: 'search-result', role: 'option', 'aria-selected': 'false', 'data-prd-id': result.prdId },
      h('span', { class: 'search-result-head' },
        h('span', { class: 'search-result-title' }, result.title),
        badge === null ? null : h('span', { class: 'search-version' }, badge)),
      result.section === '' ? null : h('span', { class: 'search-section' }, result.section),
      result.snippet.length === 0 ? null : snippet,
      result.match === 'meaning' ? h('span', { class: 'search-match' }, 'similar in meaning') : null)
    item.addEventListener('mousedown', event => event.preventDefault()) // the focus stays in the box
    item.addEventListener('click', event => open(result, event))
    return item
  }

  function show (found: SearchResult[], query: string): void {
    results = found
    setBusy(false)
    if (found.length === 0) {
      close()
      say(countText(0, query))
      return
    }
    listbox.replaceChildren(...found.map(option))
    listbox.hidden = false
    input.setAttribute('aria-expanded', 'true')
    host.classList.add('search-open')
    setActive(-1)
    say(countText(found.length, query, found.every(result => result.match === 'meaning')))
  }

  function fail (text: string, retryInMs?: number): void {
    close()
    say(text, 'error')
    if (retryInMs !== undefined) {
      retry = setTimeout(() => {
        retry = null
        if (!disposed && queryState(input.value) === 'ok') run()
      }, retryInMs)
    }
  }

  function open (result: SearchResult, event?: MouseEvent | KeyboardEvent): void {
    const path = resultPath(result)
    if (event !== undefined && (event.ctrlKey || event.metaKey)) window.open(path, '_blank', 'noopener')
    else options.navigate(path)
  }

  /** Sends the box's query now (the previous request is aborted, its answer dropped). */
  function run (): void {
    stopTimers()
    forget()
    const text = input.value
    const ticket = latest.next()
    const mine = new AbortController()
    controller = mine
    setBusy(true)
    const path = searchPath(text, { mode: isMode(mode.value) ? mode.value : 'hybrid', allVersions: versions.checked })
    void (async () => {
      try {
        const response = await getResponse(path, mine.signal)
        const body: unknown = await response.json().catch(() => undefined)
        if (disposed || !latest.isCurrent(ticket)) return
        controller = null
        if (response.ok) {
          const answer = parseAnswer(body)
          if (answer === null) fail('Search gave an answer this page cannot read. Try again.')
          else show(answer.results, text)
          return
        }
        const problem = problemOf(response.status, body, response.headers.get('retry-after'))
        if (problem.quiet === true) {
          close()
          say('')
        } else fail(problem.text, problem.retryInMs)
      } catch (error) {
        if (disposed || !latest.isCurrent(ticket) || mine.signal.aborted) return
        controller = null
        fail(messageOf(error))
      }
    })()
  }

  /** After each change of the box: nothing (too short), "too long" at once, or a query after a pause. */
  function changed (): void {
    stopTimers()
    forget()
    const state = queryState(input.value)
    if (state === 'short') {
      close()
      say('')
      return
    }
    if (state === 'long') {
      close()
      say('That search is too long', 'error')
      return
    }
    // the results shown so far stay (dimmed, aria-busy) until the new answer replaces them
    setActive(-1)
    setBusy(true)
    debounce = setTimeout(() => { debounce = null; run() }, DEBOUNCE_MS)
  }

  function clear (): void {
    stopTimers()
    forget()
    input.value = ''
    close()
    say('')
  }

  input.addEventListener('input', changed)
  input.addEventListener('keydown', event => {
    if (event.isComposing || event.altKey) return
    switch (event.key) {
      case 'ArrowDown':
      case 'ArrowUp':
        if (results.length === 0 || listbox.hidden) return
        event.preventDefault()
        setActive(moveActive(active, results.length, event.key === 'ArrowDown' ? 1 : -1))
        break
      case 'Enter':
        event.preventDefault()
        if (active >= 0 && active < results.length) open(results[active], event)
        else if (debounce !== null) run() // Enter sends the query without waiting for the pause
        break
      case 'Escape':
        if (input.value === '' && listbox.hidden) return
        event.preventDefault() // the search box would clear itself, without telling us
        clear()
        break
    }
  })
  const rerun = (): void => { if (queryState(input.value) === 'ok') run() }
  mode.addEventListener('change', rerun)
  versions.addEventListener('change', rerun)
  if (input.value !== '') changed() // typed while this chunk was on its way

  return () => {
    disposed = true
    stopTimers()
    forget()
  }
}
