/** A vitest setup file: after each test file, its temporary folders go (test/support/temp.ts). */
import { afterAll } from 'vitest';
import { removeTempDirs } from './temp.ts';

afterAll(removeTempDirs);
