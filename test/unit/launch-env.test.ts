// Launcher environments (src/cluster/env.ts): torchrun, Slurm and Open MPI variables, and the secret.
import { describe, expect, it } from 'vitest';
import { firstSlurmNode, launchEnv, launchSecret } from '../../src/cluster/env.js';

const M = { MASTER_ADDR: '10.0.0.1', MASTER_PORT: '29500' };

describe('launchEnv', () => {
  it('no launcher variables: a single-process run', () => {
    expect(launchEnv({})).toBeNull();
    expect(launchEnv({ PATH: '/bin', RANK: '' })).toBeNull();
  });

  it('torchrun', () => {
    expect(launchEnv({ RANK: '3', WORLD_SIZE: '4', LOCAL_RANK: '1', LOCAL_WORLD_SIZE: '2', ...M })).toEqual({
      launcher: 'torchrun', rank: 3, world: 4, localRank: 1, localWorld: 2, masterAddr: '10.0.0.1', masterPort: 29500,
    });
    expect(launchEnv({ RANK: '0', WORLD_SIZE: '1', ...M })).toMatchObject({ rank: 0, world: 1, localRank: 0, localWorld: null });
  });

  it('partial or inconsistent torchrun variables name the variable', () => {
    expect(() => launchEnv({ RANK: '1', ...M })).toThrow(/RANK set but WORLD_SIZE is not/);
    expect(() => launchEnv({ LOCAL_RANK: '0', ...M })).toThrow(/LOCAL_RANK set but RANK is not/);
    expect(() => launchEnv({ RANK: '4', WORLD_SIZE: '4', ...M })).toThrow(/RANK=4 is not below WORLD_SIZE=4/);
    expect(() => launchEnv({ RANK: 'x', WORLD_SIZE: '4', ...M })).toThrow(/RANK must be an integer >= 0, got 'x'/);
    expect(() => launchEnv({ RANK: '1', WORLD_SIZE: '0', ...M })).toThrow(/WORLD_SIZE must be an integer >= 1/);
    expect(() => launchEnv({ RANK: '1', WORLD_SIZE: '2', LOCAL_RANK: '2', LOCAL_WORLD_SIZE: '2', ...M })).toThrow(/LOCAL_RANK=2 is not below LOCAL_WORLD_SIZE=2/);
    expect(() => launchEnv({ RANK: '1', WORLD_SIZE: '2', MASTER_PORT: '1' })).toThrow(/MASTER_ADDR is not set/);
    expect(() => launchEnv({ RANK: '1', WORLD_SIZE: '2', MASTER_ADDR: 'h' })).toThrow(/MASTER_PORT is not set/);
    expect(() => launchEnv({ RANK: '1', WORLD_SIZE: '2', MASTER_ADDR: 'h', MASTER_PORT: '70000' })).toThrow(/MASTER_PORT must be 1..65535/);
    expect(() => launchEnv({ RANK: '1', WORLD_SIZE: '2', MASTER_ADDR: 'h', MASTER_PORT: '-3' })).toThrow(/MASTER_PORT must be an integer >= 1/);
  });

  it('Slurm: the master from MASTER_ADDR, else SLURM_LAUNCH_NODE_IPADDR, else the first node', () => {
    const s = { SLURM_PROCID: '5', SLURM_NTASKS: '8', SLURM_LOCALID: '1', MASTER_PORT: '29400' };
    expect(launchEnv({ ...s, MASTER_ADDR: 'm' })).toMatchObject({ launcher: 'slurm', rank: 5, world: 8, localRank: 1, masterAddr: 'm', masterPort: 29400 });
    expect(launchEnv({ ...s, SLURM_LAUNCH_NODE_IPADDR: '10.1.2.3', SLURM_NODELIST: 'n[1-2]' })!.masterAddr).toBe('10.1.2.3');
    expect(launchEnv({ ...s, SLURM_NODELIST: 'gpu[07-09,12],cpu1' })!.masterAddr).toBe('gpu07');
    expect(() => launchEnv(s)).toThrow(/MASTER_ADDR \(or SLURM_LAUNCH_NODE_IPADDR \/ SLURM_NODELIST\) is not set/);
    expect(() => launchEnv({ SLURM_PROCID: '0', MASTER_ADDR: 'm', MASTER_PORT: '1' })).toThrow(/SLURM_PROCID set but SLURM_NTASKS is not/);
    expect(() => launchEnv({ ...s, SLURM_NTASKS: '5', MASTER_ADDR: 'm' })).toThrow(/SLURM_PROCID=5 is not below SLURM_NTASKS=5/);
    // torchrun inside an allocation: torchrun's variables win
    expect(launchEnv({ ...s, RANK: '1', WORLD_SIZE: '2', ...M })!.launcher).toBe('torchrun');
  });

  it('first host of a Slurm node list', () => {
    expect(firstSlurmNode('node1')).toBe('node1');
    expect(firstSlurmNode('a,b')).toBe('a');
    expect(firstSlurmNode('x[003-010]')).toBe('x003');
    expect(() => firstSlurmNode('x[a-b]')).toThrow(/not numbers/);
  });

  it('Open MPI', () => {
    expect(launchEnv({ OMPI_COMM_WORLD_RANK: '2', OMPI_COMM_WORLD_SIZE: '3', OMPI_COMM_WORLD_LOCAL_RANK: '0', OMPI_COMM_WORLD_LOCAL_SIZE: '1', ...M })).toMatchObject({
      launcher: 'mpi', rank: 2, world: 3, localRank: 0, localWorld: 1,
    });
    expect(() => launchEnv({ OMPI_COMM_WORLD_RANK: '2', ...M })).toThrow(/OMPI_COMM_WORLD_RANK set but OMPI_COMM_WORLD_SIZE is not/);
    expect(() => launchEnv({ OMPI_COMM_WORLD_RANK: '0', OMPI_COMM_WORLD_SIZE: '2', MASTER_ADDR: 'm' })).toThrow(/MASTER_PORT is not set/);
  });
});

describe('launchSecret', () => {
  const long = 'x'.repeat(32);
  it('from PARALLM_SECRET or PARALLM_SECRET_FILE, never both, never short', () => {
    expect(launchSecret({ PARALLM_SECRET: long })).toBe(long);
    expect(launchSecret({ PARALLM_SECRET_FILE: '/s' }, (p) => (p === '/s' ? `${long}\n` : ''))).toBe(long);
    expect(() => launchSecret({})).toThrow(/set PARALLM_SECRET, or PARALLM_SECRET_FILE/);
    expect(() => launchSecret({ PARALLM_SECRET: long, PARALLM_SECRET_FILE: '/s' })).toThrow(/both PARALLM_SECRET and PARALLM_SECRET_FILE/);
    expect(() => launchSecret({ PARALLM_SECRET: 'short' })).toThrow(/PARALLM_SECRET\) has 5 characters; it needs at least 16/);
    expect(() => launchSecret({ PARALLM_SECRET_FILE: '/nope' }, () => { throw new Error('ENOENT'); })).toThrow(/cannot read PARALLM_SECRET_FILE '\/nope': ENOENT/);
  });
});
