import { login } from '../api'
import { h, messageOf, notice } from '../dom'
import type { AppContext } from '../main'

export function renderLogin (root: HTMLElement, ctx: AppContext, next: string): undefined {
  const username = h('input', { id: 'login-username', name: 'username', autocomplete: 'username', required: true, autocapitalize: 'none', spellcheck: 'false' })
  const password = h('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true })
  const status = h('div', { class: 'form-status' })
  const submit = h('button', { type: 'submit', class: 'button primary' }, 'Log in')
  const form = h('form', { class: 'card login-form', novalidate: true },
    h('h1', {}, 'Log in to PRD Tool'),
    next !== '/' ? h('p', { class: 'hint' }, 'Log in to continue to the page you asked for.') : null,
    h('div', { class: 'field' }, h('label', { for: 'login-username' }, 'Username'), username),
    h('div', { class: 'field' }, h('label', { for: 'login-password' }, 'Password'), password),
    status,
    submit)
  form.addEventListener('submit', event => {
    event.preventDefault()
    status.replaceChildren()
    if (username.value.trim() === '' || password.value === '') {
      status.append(notice('Enter your username and your password.'))
      ;(username.value.trim() === '' ? username : password).focus()
      return
    }
    submit.disabled = true
    submit.textContent = 'Logging in…'
    login(username.value.trim(), password.value).then(() => ctx.navigate(next, true), error => {
      submit.disabled = false
      submit.textContent = 'Log in'
      status.append(notice(messageOf(error)))
      password.select()
    })
  })
  root.append(form)
  username.focus()
  return undefined
}
