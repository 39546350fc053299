// assemblyscript-value-cap: a Keyward policy written in AssemblyScript against ABI v1
// (policy-sdk/ABI.md), without the Rust SDK.
//
// Settings: {"max_wei": "<decimal>", "deny_kinds": ["<intent kind>", ...]}
// - an intent whose kind is listed in `deny_kinds` is denied;
// - an `ethereum_transaction` whose `value` exceeds `max_wei` is denied;
// - anything else is allowed.
// Every evaluation logs one line through the host's `log`.
//
// It must never allow on input it cannot read: a missing or malformed field is a deny.

import { JSON } from "json-as";
import { log } from "./host";

// ---- ABI v1: the exports ------------------------------------------------------------------

export function keyward_abi_version(): i32 {
  return 1;
}

/** Memory for the host to write the input into. Raw heap memory: the collector never sees it. */
export function keyward_alloc(len: i32): usize {
  return heap.alloc(<usize>max(len, 1));
}

export function keyward_dealloc(ptr: usize, len: i32): void {
  heap.free(ptr);
}

export function keyward_evaluate(ptr: usize, len: i32): i64 {
  const input = JSON.parse<JSON.Obj>(String.UTF8.decodeUnsafe(ptr, <usize>len));
  const request = objectField(input, "request");
  const settingsValue = input.get("settings");
  const check = readSettings(settingsValue);
  if (check.error !== null) {
    // Bound settings are checked at bind time; this only guards a policy evaluated by hand.
    return respond(deny("settings: " + check.error!));
  }
  const settings = check.settings!;
  if (request === null) return respond(deny("the input has no request object"));
  const intent = objectField(request, "intent");
  if (intent === null) return respond(deny("the request has no intent object"));
  const kind = stringField(intent, "kind");
  if (kind === null) return respond(deny("the intent has no kind"));

  if (settings.denyKinds.includes(kind)) {
    log("value-cap: " + kind + " denied by deny_kinds");
    return respond(deny("intents of kind " + kind + " are not allowed for this key"));
  }
  if (kind == "ethereum_transaction") {
    const value = stringField(intent, "value");
    if (value === null || !isDecimal(value)) {
      return respond(deny("the transaction has no decimal value"));
    }
    const over = compareDecimal(value, settings.maxWei) > 0;
    log(
      "value-cap: " +
        value +
        " wei against a cap of " +
        settings.maxWei +
        " wei: " +
        (over ? "deny" : "allow"),
    );
    if (over) {
      return respond(
        deny(
          "the transaction sends " +
            value +
            " wei, above the cap of " +
            settings.maxWei +
            " wei",
        ),
      );
    }
    return respond(allow());
  }
  log("value-cap: " + kind + " carries no value: allow");
  return respond(allow());
}

export function keyward_validate_settings(ptr: usize, len: i32): i64 {
  const text = String.UTF8.decodeUnsafe(ptr, <usize>len);
  const check = readSettings(JSON.parse<JSON.Value>(text));
  const answer = new SettingsCheck();
  answer.valid = check.error === null;
  answer.error = check.error;
  return output(JSON.stringify(answer));
}

// ---- Output (output.schema.json, settings-check.schema.json) ------------------------------

@json
class Decision {
  decision: string = "allow";

  @omitnull()
  reason: string | null = null;
}

@json
class SettingsCheck {
  valid: bool = false;

  @omitnull()
  error: string | null = null;
}

function allow(): Decision {
  return new Decision();
}

function deny(reason: string): Decision {
  const d = new Decision();
  d.decision = "deny";
  d.reason = reason;
  return d;
}

function respond(decision: Decision): i64 {
  return output(JSON.stringify(decision));
}

/**
 * Encodes `json` as UTF-8 and packs `(ptr << 32) | len`. The buffer stays valid: the host
 * reads it before anything else runs in this instance, and the instance is then dropped.
 */
function output(json: string): i64 {
  const bytes = String.UTF8.encode(json);
  return <i64>((<u64>changetype<usize>(bytes) << 32) | <u64>bytes.byteLength);
}

// ---- Settings -----------------------------------------------------------------------------

class Settings {
  maxWei: string = "0";
  denyKinds: string[] = [];
}

class SettingsResult {
  settings: Settings | null = null;
  error: string | null = null;
}

function settingsError(message: string): SettingsResult {
  const r = new SettingsResult();
  r.error = message;
  return r;
}

/** Reads and checks the settings; `error` says what is wrong, for the key administrator. */
function readSettings(value: JSON.Value | null): SettingsResult {
  const usage = 'settings must be {"max_wei": "<decimal>", "deny_kinds": ["<kind>", ...]}';
  if (value === null || value.type != JSON.Types.Object) return settingsError(usage);
  const obj = value.get<JSON.Obj>();
  const keys = obj.keys();
  for (let i = 0; i < keys.length; i++) {
    if (keys[i] != "max_wei" && keys[i] != "deny_kinds") {
      return settingsError("unknown setting " + keys[i] + "; " + usage);
    }
  }
  const settings = new Settings();
  const max = stringField(obj, "max_wei");
  if (max === null) return settingsError("max_wei must be a decimal string, e.g. \"1000000000000000000\"");
  if (!isDecimal(max)) {
    return settingsError("max_wei must be a decimal string of digits, got " + max);
  }
  settings.maxWei = max;
  const kinds = obj.get("deny_kinds");
  if (kinds !== null && kinds.type != JSON.Types.Null) {
    if (kinds.type != JSON.Types.Array) return settingsError("deny_kinds must be a list of strings");
    const list = kinds.get<JSON.Arr>();
    for (let i = 0; i < list.length; i++) {
      const item = list.at(i);
      if (item.type != JSON.Types.String) return settingsError("deny_kinds must be a list of strings");
      settings.denyKinds.push(item.get<string>());
    }
  }
  const r = new SettingsResult();
  r.settings = settings;
  return r;
}

// ---- Reading the input --------------------------------------------------------------------

function objectField(obj: JSON.Obj, key: string): JSON.Obj | null {
  const v = obj.get(key);
  if (v === null || v.type != JSON.Types.Object) return null;
  return v.get<JSON.Obj>();
}

function stringField(obj: JSON.Obj, key: string): string | null {
  const v = obj.get(key);
  if (v === null || v.type != JSON.Types.String) return null;
  return v.get<string>();
}

// ---- Wei amounts --------------------------------------------------------------------------
// Amounts are decimal strings of up to 78 digits (256 bits); comparing them needs no big
// integers: without leading zeros, the longer one is larger, and equal lengths compare as text.

function isDecimal(s: string): bool {
  if (s.length == 0 || s.length > 78) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

function withoutLeadingZeros(s: string): string {
  let i = 0;
  while (i < s.length - 1 && s.charCodeAt(i) == 48) i++;
  return s.substring(i);
}

/** -1, 0 or 1 as `a` is below, equal to or above `b` (both decimal). */
function compareDecimal(a: string, b: string): i32 {
  const x = withoutLeadingZeros(a);
  const y = withoutLeadingZeros(b);
  if (x.length != y.length) return x.length < y.length ? -1 : 1;
  if (x == y) return 0;
  return x < y ? -1 : 1;
}
