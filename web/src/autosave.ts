// The auto-save state machine of the seed's flow 4.1, free of DOM and network: a pure `transition`
// function, and a small driver (`AutoSaver`) that runs its timers through an injectable clock.
//
// Every keystroke is sent to the server at once (co-editors see it live); what the machine tracks is
// whether the server has acknowledged every local edit:
//   edit ──► unsynced ──(2 s without typing)──► saving: save locally, wait for the server's acks
//   all acked ──► saved        no ack in time / refused ──► retry with backoff (1 s, 2 s, 4 s, 8 s, 16 s)
//   5 retries failed ──► error ("Not saved — retry"; a click resyncs)
//   connection lost ──► offline (never saved while disconnected); reconnected ──► saving ──► saved
export type SyncState = 'saved' | 'saving' | 'unsynced' | 'offline' | 'error'
export type Timer = 'debounce' | 'ackTimeout' | 'backoff'

export const STATE_TEXT: Record<SyncState, string> = {
  saved: 'Saved',
  saving: 'Saving…',
  unsynced: 'Unsynced',
  offline: 'Offline',
  error: 'Not saved — retry'
}

export interface Config {
  debounceMs: number
  ackTimeoutMs: number
  backoffBaseMs: number
  backoffMaxMs: number
  maxRetries: number
}

export const DEFAULT_CONFIG: Config = { debounceMs: 2000, ackTimeoutMs: 5000, backoffBaseMs: 1000, backoffMaxMs: 30_000, maxRetries: 5 }

export interface Model {
  state: SyncState
  online: boolean
  /** Local edits the server has not acknowledged yet (as far as the machine knows). */
  dirty: boolean
  /** Failed server saves since the last success: 1..maxRetries are retries. */
  failures: number
  typing: boolean
}

export type Event =
  | { type: 'edit' } // a local change to the document
  | { type: 'debounceElapsed' }
  | { type: 'acked' } // the server acknowledged every update sent
  | { type: 'failed' } // an update was refused / failed to store, or no ack came in time
  | { type: 'backoffElapsed' }
  | { type: 'connected' } // the sync exchange after (re)connecting is done
  | { type: 'disconnected' }
  | { type: 'retryClicked' }

export type Command =
  | { type: 'schedule', timer: Timer, ms: number }
  | { type: 'cancel', timer: Timer }
  | { type: 'saveLocal' } // persist the local copy (IndexedDB)
  | { type: 'checkAcked' } // dispatch 'acked' now if nothing is waiting for an ack
  | { type: 'resend' } // send unacknowledged updates again
  | { type: 'resync' } // reconnect: a full sync exchange uploads whatever the server lacks

export const initialModel = (online = false): Model =>
  ({ state: online ? 'saved' : 'offline', online, dirty: false, failures: 0, typing: false })

export function backoffMs (failures: number, config: Config = DEFAULT_CONFIG): number {
  return Math.min(config.backoffMaxMs, config.backoffBaseMs * 2 ** Math.max(0, failures - 1))
}

const waitForAck = (config: Config): Command[] =>
  [{ type: 'schedule', timer: 'ackTimeout', ms: config.ackTimeoutMs }, { type: 'checkAcked' }]

const cancelServerTimers: Command[] = [{ type: 'cancel', timer: 'ackTimeout' }, { type: 'cancel', timer: 'backoff' }]

export function transition (model: Model, event: Event, config: Config = DEFAULT_CONFIG): [Model, Command[]] {
  switch (event.type) {
    case 'edit': {
      const state = !model.online ? 'offline' : model.state === 'error' ? 'error' : 'unsynced'
      return [{ ...model, dirty: true, typing: true, state },
        [{ type: 'schedule', timer: 'debounce', ms: config.debounceMs }]]
    }
    case 'debounceElapsed': {
      const next = { ...model, typing: false }
      if (!model.online) return [{ ...next, state: 'offline' }, [{ type: 'saveLocal' }]]
      if (model.state === 'error') return [next, [{ type: 'saveLocal' }]]
      return [{ ...next, state: 'saving' }, [{ type: 'saveLocal' }, ...waitForAck(config)]]
    }
    case 'acked':
      if (!model.online) return [model, []]
      // Everything sent is stored: no retry is due. While typing, "saved" waits for the debounce.
      if (model.typing) return [{ ...model, failures: 0 }, cancelServerTimers]
      return [{ ...model, state: 'saved', dirty: false, failures: 0 }, cancelServerTimers]
    case 'failed': {
      if (!model.online || model.state === 'error') return [model, []]
      if (model.failures >= config.maxRetries) {
        return [{ ...model, state: 'error' }, cancelServerTimers]
      }
      const failures = model.failures + 1
      return [{ ...model, state: model.typing ? 'unsynced' : 'saving', failures },
        [{ type: 'cancel', timer: 'ackTimeout' }, { type: 'schedule', timer: 'backoff', ms: backoffMs(failures, config) }]]
    }
    case 'backoffElapsed':
      if (!model.online || model.state === 'error') return [model, []]
      return [model, [{ type: 'resend' }, ...waitForAck(config)]]
    case 'connected':
      if (model.typing) return [{ ...model, online: true, failures: 0, state: 'unsynced' }, []]
      return [{ ...model, online: true, failures: 0, state: 'saving' }, waitForAck(config)]
    case 'disconnected':
      return [{ ...model, online: false, failures: 0, state: 'offline' }, cancelServerTimers]
    case 'retryClicked':
      if (!model.online) return [{ ...model, failures: 0, state: 'offline' }, [{ type: 'resync' }]]
      return [{ ...model, failures: 0, state: 'saving' }, [...cancelServerTimers, { type: 'resync' }]]
  }
}

export interface Clock {
  setTimeout: (fn: () => void, ms: number) => unknown
  clearTimeout: (handle: any) => void
}

export interface Effects {
  saveLocal: () => void
  /** Whether the server has acknowledged every update sent (nothing is waiting for an ack). */
  allAcked: () => boolean
  resend: () => void
  resync: () => void
  onState: (state: SyncState, model: Model) => void
}

const TIMER_EVENT: Record<Timer, Event> = {
  debounce: { type: 'debounceElapsed' },
  ackTimeout: { type: 'failed' },
  backoff: { type: 'backoffElapsed' }
}

/** Runs `transition` with real (or fake) timers and performs its commands through `effects`. */
export class AutoSaver {
  model: Model
  private timers = new Map<Timer, unknown>()

  constructor (private readonly effects: Effects, private readonly config: Config = DEFAULT_CONFIG,
    private readonly clock: Clock = globalThis, online = false) {
    this.model = initialModel(online)
  }

  get state (): SyncState { return this.model.state }

  dispatch (event: Event): void {
    const before = this.model.state
    const [model, commands] = transition(this.model, event, this.config)
    this.model = model
    if (model.state !== before) this.effects.onState(model.state, model)
    for (const command of commands) this.run(command)
  }

  /** Stops every timer (leaving the page, logging out). */
  stop (): void {
    for (const timer of [...this.timers.keys()]) this.cancel(timer)
  }

  private cancel (timer: Timer): void {
    if (this.timers.has(timer)) this.clock.clearTimeout(this.timers.get(timer))
    this.timers.delete(timer)
  }

  private run (command: Command): void {
    switch (command.type) {
      case 'schedule':
        this.cancel(command.timer)
        this.timers.set(command.timer, this.clock.setTimeout(() => {
          this.timers.delete(command.timer)
          this.dispatch(TIMER_EVENT[command.timer])
        }, command.ms))
        return
      case 'cancel': return this.cancel(command.timer)
      case 'saveLocal': return this.effects.saveLocal()
      case 'checkAcked':
        if (this.effects.allAcked()) this.dispatch({ type: 'acked' })
        return
      case 'resend': return this.effects.resend()
      case 'resync': return this.effects.resync()
    }
  }
}
