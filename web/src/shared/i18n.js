// Korean and English. The language comes from a choice the user made on this device, else
// from the browser's preferred languages, else English; switching re-renders in place.
import { shared } from './dict.js';

const STORE = 'smartgym.lang';
const SUPPORTED = ['ko', 'en'];
const dictionaries = { ko: { ...shared.ko }, en: { ...shared.en } };
const listeners = new Set();
let current = pick();

function pick() {
  const saved = localStorage.getItem(STORE);
  if (SUPPORTED.includes(saved)) return saved;
  for (const tag of navigator.languages || [navigator.language || 'en']) {
    const base = String(tag).toLowerCase().split('-')[0];
    if (SUPPORTED.includes(base)) return base;
  }
  return 'en';
}

export function addDictionary(dict) {
  for (const lang of SUPPORTED) Object.assign(dictionaries[lang], dict[lang] || {});
}

export function lang() {
  return current;
}

export function setLang(next) {
  if (!SUPPORTED.includes(next) || next === current) return;
  current = next;
  localStorage.setItem(STORE, next);
  document.documentElement.lang = next;
  for (const listener of listeners) listener(next);
}

export function onLangChange(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

// t('key', {n: 3}) -> the text with {n} filled; an unknown key shows itself (visible in
// screenshots, never a blank).
export function t(key, params = {}) {
  const text = dictionaries[current][key] ?? dictionaries.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in params ? String(params[name]) : `{${name}}`));
}

export function has(key) {
  return key in dictionaries[current] || key in dictionaries.en;
}

document.documentElement.lang = current;
