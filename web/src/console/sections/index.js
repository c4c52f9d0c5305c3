import { overview } from './overview.js';
import { profile } from './profile.js';
import { equipment } from './equipment.js';
import { gates } from './gates.js';
import { queue } from './queue.js';
import { reviews } from './reviews.js';
import { members } from './members.js';
import { devices } from './devices.js';
import { payouts } from './payouts.js';

export const SECTIONS = { overview, profile, equipment, gates, queue, reviews, members, devices, payouts };
