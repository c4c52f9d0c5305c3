import { overview } from './overview.js';

export const SECTIONS = {
  overview,
};
