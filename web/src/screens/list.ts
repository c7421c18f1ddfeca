import { api, type PrdSummary, type Template } from '../api'
import { h, messageOf, notice } from '../dom'
import type { Importer } from '../features/import'
import '../features/import.css' // the import controls are part of this screen (the import's logic is a lazy chunk)
import '../features/search.css' // the search box is part of this screen (its logic is a lazy chunk)
import type { AppContext } from '../main'

/** What the import takes (prdtool.imports.sniff.EXTENSIONS; features/import.ts checks it again). */
export const IMPORT_ACCEPT = '.docx,.docm,.pdf,.md,.markdown,.txt,.html,.htm,.xhtml'
const ROLE_TEXT: Record<string, string> = { owner: 'Owner', editor: 'Editor', commenter: 'Commenter', viewer: 'Viewer' }

/** Whether a PRD matches the filter: every word of the query appears in its title (case-insensitive). */
export function matches (title: string, query: string): boolean {
  const haystack = title.toLocaleLowerCase()
  return query.toLocaleLowerCase().split(/\s+/).filter(Boolean).every(word => haystack.includes(word))
}

/** Renders / (the PRD list, "New PRD" and the import); returns a cleanup (an import being followed stops). */
export function renderList (root: HTMLElement, ctx: AppContext): () => void {
  let disposed = false
  const filter = h('input', { id: 'prd-filter', type: 'search', placeholder: 'Type to filter by title', autocomplete: 'off' })
  const list = h('ul', { class: 'prd-list', 'aria-label': 'Your PRDs' })
  const count = h('p', { class: 'hint', role: 'status' })
  const status = h('div')
  let prds: PrdSummary[] = []

  const show = (): void => {
    const shown = prds.filter(prd => matches(prd.title, filter.value))
    list.replaceChildren(...shown.map(prd => h('li', { class: 'prd-item' },
      h('a', { href: `/prds/${encodeURIComponent(prd.id)}` }, prd.title),
      h('span', { class: `role role-${prd.role}` }, ROLE_TEXT[prd.role] ?? prd.role))))
    count.textContent = prds.length === 0 ? 'You have no PRDs yet.' : `${shown.length} of ${prds.length} PRDs`
  }
  filter.addEventListener('input', show)

  const title = h('input', { id: 'new-title', required: true, maxlength: 200 })
  const template = h('select', { id: 'new-template' }, h('option', { value: 'blank' }, 'Blank'))
  const createStatus = h('div')
  const create = h('form', { class: 'card new-prd', 'aria-labelledby': 'new-prd-heading' },
    h('h2', { id: 'new-prd-heading' }, 'New PRD'),
    h('div', { class: 'field' }, h('label', { for: 'new-title' }, 'Title'), title),
    h('div', { class: 'field' }, h('label', { for: 'new-template' }, 'Start from'), template),
    createStatus,
    h('button', { type: 'submit', class: 'button primary' }, 'Create PRD'))
  create.addEventListener('submit', event => {
    event.preventDefault()
    createStatus.replaceChildren()
    if (title.value.trim() === '') {
      createStatus.append(notice('Give the PRD a title.'))
      title.focus()
      return
    }
    api.createPrd(title.value.trim(), template.value).then(prd => ctx.navigate(`/prds/${prd.id}`),
      error => createStatus.append(notice(messageOf(error))))
  })

  // Import a document: the controls beside "New PRD", progress and the report above the list, the
  // whole page as the drop zone. The work (checks, upload, polling, report) is features/import.ts, a
  // chunk loaded when a file is picked or dragged over the page: the list itself loads nothing more.
  const fileInput = h('input', { type: 'file', id: 'import-file', accept: IMPORT_ACCEPT, hidden: true, 'aria-label': 'Document to import' })
  const pick = h('button', { type: 'button', class: 'button primary', id: 'import-pick', 'aria-describedby': 'import-help' }, 'Import a document')
  const importName = h('input', { id: 'import-name', maxlength: 200, autocomplete: 'off', 'aria-describedby': 'import-name-hint' })
  const importDraft = h('input', { type: 'checkbox', id: 'import-draft', checked: true })
  const importStatus = h('div', { class: 'import-form-status' })
  const importCard = h('section', { class: 'card import-card', 'aria-labelledby': 'import-heading' },
    h('h2', { id: 'import-heading' }, 'Import from a file'),
    h('div', { class: 'field' },
      h('label', { for: 'import-name' }, 'Name of the new PRD (optional)'),
      importName,
      h('p', { class: 'hint', id: 'import-name-hint' }, 'Leave it empty to use the document\'s own heading.')),
    h('div', { class: 'import-check' }, importDraft, h('label', { for: 'import-draft' }, 'Draft missing sections with AI')),
    importStatus,
    pick,
    fileInput,
    h('p', { class: 'hint', id: 'import-help' }, 'Word (.docx), PDF, Markdown (.md) or HTML, up to 20 MB. You can also drop the file on this page.'))
  const importOutput = h('div', { class: 'import-output' })
  // Search: the box is here; features/search.ts (a chunk) is loaded when it is first focused ("/" focuses it)
  const searchInput = h('input', { id: 'prd-search', type: 'search', placeholder: 'Search titles and content', autocomplete: 'off', 'aria-keyshortcuts': '/' })
  const search = h('div', { class: 'prd-search' }, h('div', { class: 'field search-field' }, h('label', { for: 'prd-search' }, 'Search PRDs'), searchInput))
  const page = h('div', { class: 'list-page import-drop-zone' },
    h('section', { class: 'prds', 'aria-labelledby': 'prds-heading' },
      h('h1', { id: 'prds-heading' }, 'Your PRDs'),
      search,
      importOutput,
      h('div', { class: 'field' }, h('label', { for: 'prd-filter' }, 'Filter PRDs'), filter),
      count, status, list),
    h('div', { class: 'list-side' }, create, importCard),
    h('div', { class: 'import-drop-hint', 'aria-hidden': 'true' }, h('p', {}, 'Drop the document to import it')))
  root.append(page)

  let stopSearch: (() => void) | undefined
  let searchLoading = false
  searchInput.addEventListener('focus', () => {
    if (searchLoading) return
    searchLoading = true
    import('../features/search').then(module => { if (!disposed) stopSearch = module.mountSearch(search, searchInput, { navigate: ctx.navigate }) },
      error => { searchLoading = false; if (!disposed) search.append(notice(`Search is not available: ${messageOf(error)}`)) })
  })
  const focusSearch = (event: KeyboardEvent): void => {
    const target = event.target instanceof HTMLElement ? event.target : null
    if (event.key !== '/' || event.ctrlKey || event.metaKey || event.altKey || event.defaultPrevented ||
      target?.isContentEditable === true || /^(INPUT|TEXTAREA|SELECT)$/.test(target?.tagName ?? '')) return
    event.preventDefault()
    searchInput.focus()
  }
  document.addEventListener('keydown', focusSearch)

  let importer: Importer | null = null
  let importerLoading: Promise<Importer> | null = null
  const loadImporter = (): Promise<Importer> => {
    importerLoading ??= import('../features/import').then(module => {
      importer = module.createImporter({ output: importOutput, status: importStatus, button: pick, onImported: () => { if (!disposed) load() } })
      if (disposed) importer.dispose()
      return importer
    })
    importerLoading.catch(() => { importerLoading = null }) // a later attempt may load it
    return importerLoading
  }
  const importFile = (file: File): void => {
    loadImporter().then(found => {
      if (!disposed) found.start(file, { name: importName.value, draftMissing: importDraft.checked })
    }, error => { if (!disposed) importStatus.replaceChildren(notice(`Importing is not available: ${messageOf(error)}`)) })
  }
  pick.addEventListener('click', () => {
    if (importer?.running === true) importStatus.replaceChildren(notice('An import is already running: wait until it is finished.'))
    else fileInput.click()
  })
  fileInput.addEventListener('change', () => {
    const file = fileInput.files?.[0]
    fileInput.value = '' // the same file may be picked again
    if (file !== undefined) importFile(file)
  })
  // drag and drop: dragover must be answered at once (or there is no drop), so these stay here
  let dragDepth = 0
  const hasFiles = (event: DragEvent): boolean => [...(event.dataTransfer?.types ?? [])].includes('Files')
  page.addEventListener('dragenter', event => {
    if (!hasFiles(event)) return
    event.preventDefault()
    dragDepth++
    page.classList.add('import-drop-active')
    void loadImporter().catch(() => {}) // fetched while the file is on its way
  })
  page.addEventListener('dragover', event => {
    if (!hasFiles(event)) return
    event.preventDefault()
    if (event.dataTransfer !== null) event.dataTransfer.dropEffect = 'copy'
  })
  page.addEventListener('dragleave', event => {
    if (!hasFiles(event)) return
    dragDepth = Math.max(0, dragDepth - 1)
    if (dragDepth === 0) page.classList.remove('import-drop-active')
  })
  page.addEventListener('drop', event => {
    const files = event.dataTransfer?.files
    if (files === undefined || files.length === 0) return
    event.preventDefault()
    dragDepth = 0
    page.classList.remove('import-drop-active')
    if (files.length > 1) importStatus.replaceChildren(notice('Drop one document at a time.'))
    else importFile(files[0])
  })

  const load = (): void => {
    api.listPrds().then(items => {
      if (disposed) return
      prds = items.sort((a, b) => a.title.localeCompare(b.title))
      status.replaceChildren()
      show()
    }, error => { if (!disposed) status.replaceChildren(notice(messageOf(error))) })
  }
  load()
  api.templates().then((templates: Template[]) => {
    template.replaceChildren(...templates.map(t => h('option', { value: t.id }, t.id === 'blank' ? 'Blank' : `Template: ${t.name}`)))
  }, () => {})

  return () => {
    disposed = true
    importer?.dispose()
    document.removeEventListener('keydown', focusSearch)
    stopSearch?.()
  }
}
