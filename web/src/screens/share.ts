// The owner's share dialog: add a person with a role, change or remove roles.
import { api, currentSession, type Member, type Role } from '../api'
import { h, messageOf, notice } from '../dom'

const ROLES: Role[] = ['viewer', 'commenter', 'editor', 'owner']
const roleSelect = (id: string, value: Role, label: string): HTMLSelectElement =>
  h('select', { id, 'aria-label': label }, ...ROLES.map(role => h('option', { value: role, selected: role === value }, role[0].toUpperCase() + role.slice(1))))

export function openShareDialog (prdId: string, title: string): HTMLDialogElement {
  const status = h('div', { class: 'form-status' })
  const list = h('ul', { class: 'members', 'aria-label': 'People with access' })
  const me = currentSession()?.username
  const report = (error: unknown): void => { status.replaceChildren(notice(messageOf(error))) }
  const done = (text: string): void => { status.replaceChildren(notice(text, 'info')) }

  const refresh = async (): Promise<void> => {
    let members: Member[]
    try {
      members = await api.members(prdId)
    } catch (error) {
      return report(error)
    }
    list.replaceChildren(...members.map((member, i) => {
      const select = roleSelect(`member-role-${i}`, member.role, `Role of ${member.username}`)
      select.disabled = member.username === me
      select.addEventListener('change', () => {
        api.setMember(prdId, member.username, select.value as Role)
          .then(() => done(`${member.username} is now ${select.value}.`), report)
      })
      return h('li', { class: 'member' },
        h('span', { class: 'member-name' }, member.username === me ? `${member.username} (you)` : member.username),
        select,
        member.username === me
          ? null
          : h('button', {
            type: 'button',
            class: 'button',
            'aria-label': `Remove ${member.username}`,
            onclick: () => {
              api.removeMember(prdId, member.username).then(async () => { done(`${member.username} was removed.`); await refresh() }, report)
            }
          }, 'Remove'))
    }))
  }

  const username = h('input', { id: 'share-username', required: true, autocomplete: 'off', autocapitalize: 'none' })
  const role = roleSelect('share-role', 'editor', 'Role')
  role.removeAttribute('aria-label')
  const add = h('form', { class: 'share-add' },
    h('div', { class: 'field' }, h('label', { for: 'share-username' }, 'Username'), username),
    h('div', { class: 'field' }, h('label', { for: 'share-role' }, 'Role'), role),
    h('button', { type: 'submit', class: 'button primary' }, 'Add person'))
  add.addEventListener('submit', event => {
    event.preventDefault()
    const name = username.value.trim()
    if (name === '') return report(new Error('Enter the username of the person to add.'))
    api.setMember(prdId, name, role.value as Role).then(async () => {
      done(`${name} can now open this PRD as ${role.value}.`)
      username.value = ''
      await refresh()
    }, report)
  })

  const dialog = h('dialog', { class: 'share-dialog', 'aria-labelledby': 'share-heading' },
    h('h2', { id: 'share-heading' }, `Share “${title}”`),
    list, add, status,
    h('div', { class: 'dialog-actions' }, h('button', { type: 'button', class: 'button', onclick: () => dialog.close() }, 'Close')))
  dialog.addEventListener('close', () => dialog.remove())
  document.body.append(dialog)
  dialog.showModal()
  username.focus()
  void refresh()
  return dialog
}
