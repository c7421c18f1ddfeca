import { api, type PrdSummary, type Template } from '../api'
import { h, messageOf, notice } from '../dom'
import type { AppContext } from '../main'

const ROLE_TEXT: Record<string, string> = { owner: 'Owner', editor: 'Editor', commenter: 'Commenter', viewer: 'Viewer' }

/** Whether a PRD matches the filter: every word of the query appears in its title (case-insensitive). */
export function matches (title: string, query: string): boolean {
  const haystack = title.toLocaleLowerCase()
  return query.toLocaleLowerCase().split(/\s+/).filter(Boolean).every(word => haystack.includes(word))
}

export function renderList (root: HTMLElement, ctx: AppContext): undefined {
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

  root.append(h('div', { class: 'list-page' },
    h('section', { class: 'prds', 'aria-labelledby': 'prds-heading' },
      h('h1', { id: 'prds-heading' }, 'Your PRDs'),
      h('div', { class: 'field' }, h('label', { for: 'prd-filter' }, 'Filter PRDs'), filter),
      count, status, list),
    create))

  api.listPrds().then(items => {
    prds = items.sort((a, b) => a.title.localeCompare(b.title))
    show()
  }, error => status.append(notice(messageOf(error))))
  api.templates().then((templates: Template[]) => {
    template.replaceChildren(...templates.map(t => h('option', { value: t.id }, t.id === 'blank' ? 'Blank' : `Template: ${t.name}`)))
  }, () => {})
  return undefined
}
