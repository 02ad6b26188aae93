// The CLI's --spawn command line is split into words as a POSIX shell would (quotes, backslashes),
// without a shell; test/cli.test.ts runs the command itself.
import { describe, expect, it } from 'vitest';
import { splitCommand, UsageError } from '../src/cli-args.js';

describe('splitCommand', () => {
  it.each([
    ['python3 app.py {socket}', ['python3', 'app.py', '{socket}']],
    ['  uwsgi\t--scgi-socket {socket}  ', ['uwsgi', '--scgi-socket', '{socket}']],
    [`node -e "console.log('a b')"`, ['node', '-e', "console.log('a b')"]],
    [`sh -c 'echo "$HOME"'`, ['sh', '-c', 'echo "$HOME"']],
    ['a "b \\" c" d\\ e', ['a', 'b " c', 'd e']],
    [`x '' ""`, ['x', '', '']],
    ['"/opt/my app/run" --socket={socket}', ['/opt/my app/run', '--socket={socket}']],
  ])('%s', (line, words) => {
    expect(splitCommand(line)).toEqual(words);
  });

  it.each([`python3 'app.py`, 'a "b'])('refuses an unbalanced quote: %s', (line) => {
    expect(() => splitCommand(line)).toThrow(UsageError);
  });
});
