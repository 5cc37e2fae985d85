/** Golden images: the list with import progress, upload or import from a path, delete. */
import { useRef, useState } from 'preact/hooks';
import { api, seg, uploadImage, type Image } from '../api';
import { ago, bytes, fraction, rate, when } from '../format';
import { ActionButton, Card, Dot, Empty, HeadRow, Progress, confirmAction, h, toast, toastError, usePoll, type El } from '../ui';

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$/;

/** An image name from a file name: "debian-12.qcow2" -> "debian-12". */
function nameFromFile(file: string): string {
  return file
    .replace(/\.(img|raw|qcow2|bin|iso)$/i, '')
    .replace(/[^a-zA-Z0-9._-]+/g, '-')
    .replace(/^[^a-zA-Z0-9]+/, '')
    .slice(0, 64);
}

interface Upload {
  name: string;
  sent: number;
  total: number;
  startedAt: number;
  abort: () => void;
}

function ImportForm(props: { onStarted: () => void }): El {
  const [mode, setMode] = useState<'upload' | 'path'>('upload');
  const [name, setName] = useState('');
  const [path, setPath] = useState('');
  const [file, setFile] = useState<File | undefined>(undefined);
  const [upload, setUpload] = useState<Upload | undefined>(undefined);
  const fileRef = useRef<HTMLInputElement>(null);
  const nameOk = NAME_RE.test(name);

  const start = async () => {
    if (mode === 'path') {
      try {
        await api('POST', '/api/images', { name, path: path.trim() });
        toast(`Importing “${name}”`);
        setName('');
        setPath('');
        props.onStarted();
      } catch (err) {
        toastError('Import failed', err);
      }
      return;
    }
    if (!file) return;
    const job = uploadImage(name, file, (sent, total) => setUpload((u) => (u ? { ...u, sent, total } : u)));
    setUpload({ name, sent: 0, total: file.size, startedAt: performance.now(), abort: job.abort });
    props.onStarted();
    try {
      await job.done;
      toast(`Uploaded “${name}”`);
      setName('');
      setFile(undefined);
      if (fileRef.current) fileRef.current.value = '';
    } catch (err) {
      toastError('Upload failed', err);
    } finally {
      setUpload(undefined);
      props.onStarted();
    }
  };

  if (upload) {
    const secs = (performance.now() - upload.startedAt) / 1000;
    return h(
      'div',
      { class: 'upload' },
      h(
        'div',
        { class: 'upload-head' },
        h('strong', null, `Uploading “${upload.name}”`),
        h('span', { class: 'muted' }, `${bytes(upload.sent)} of ${bytes(upload.total)}${secs > 1 ? ` · ${rate(upload.sent / secs)}` : ''}`),
      ),
      h(Progress, { value: upload.total ? upload.sent / upload.total : undefined, label: 'upload progress' }),
      h('button', { class: 'btn small', onClick: () => upload.abort() }, 'Cancel upload'),
    );
  }

  return h(
    'form',
    { class: 'import-form', onSubmit: (e: Event) => e.preventDefault() },
    h(
      'div',
      { class: 'tabs', role: 'tablist' },
      h(
        'button',
        {
          type: 'button',
          role: 'tab',
          'aria-selected': mode === 'upload' ? 'true' : 'false',
          class: mode === 'upload' ? 'tab on' : 'tab',
          onClick: () => setMode('upload'),
        },
        'Upload a file',
      ),
      h(
        'button',
        {
          type: 'button',
          role: 'tab',
          'aria-selected': mode === 'path' ? 'true' : 'false',
          class: mode === 'path' ? 'tab on' : 'tab',
          onClick: () => setMode('path'),
        },
        'File on the appliance',
      ),
    ),
    h(
      'div',
      { class: 'inline-form' },
      mode === 'upload'
        ? h(
            'div',
            { class: 'field grow' },
            h('label', { for: 'img-file' }, 'Disk image (raw or qcow2)'),
            h('input', {
              id: 'img-file',
              type: 'file',
              ref: fileRef,
              onChange: (e: Event) => {
                const f = (e.target as HTMLInputElement).files?.[0];
                setFile(f);
                if (f && !name) setName(nameFromFile(f.name));
              },
            }),
          )
        : h(
            'div',
            { class: 'field grow' },
            h('label', { for: 'img-path' }, 'Path on the appliance'),
            h('input', {
              id: 'img-path',
              placeholder: '/srv/netboot/import/debian-12.qcow2',
              value: path,
              spellcheck: false,
              onInput: (e: Event) => setPath((e.target as HTMLInputElement).value),
            }),
            // Server-side imports read only from the import directories (docs/security.md).
            h(
              'p',
              { class: 'hint' },
              'Only files in the import folder (<data>/import, or a USB stick labelled NETIMPORT at /media/netimport) can be imported by path.',
            ),
          ),
      h(
        'div',
        { class: 'field' },
        h('label', { for: 'img-name' }, 'Name'),
        h('input', {
          id: 'img-name',
          class: name && !nameOk ? 'invalid' : '',
          placeholder: 'debian-12',
          value: name,
          spellcheck: false,
          onInput: (e: Event) => setName((e.target as HTMLInputElement).value),
        }),
      ),
      h(
        'div',
        { class: 'field actions' },
        h(
          ActionButton,
          { class: 'primary', type: 'submit', disabled: !nameOk || (mode === 'upload' ? !file : !path.trim()), onClick: start },
          mode === 'upload' ? 'Upload' : 'Import',
        ),
      ),
    ),
    name && !nameOk ? h('p', { class: 'hint' }, 'Names use letters, digits, dot, dash and underscore (up to 64).') : null,
  );
}

function ImageRow(props: { img: Image; changed: () => void }): El {
  const { img } = props;
  const users = Array.isArray(img.clients) ? img.clients.length : img.clients;
  const f = fraction(img.progress);
  const verb = img.state === 'importing' ? 'Cancel' : img.state === 'failed' ? 'Dismiss' : 'Delete';
  const remove = async () => {
    if (img.state !== 'failed') {
      const ok = await confirmAction(
        img.state === 'importing'
          ? {
              title: `Cancel the import of “${img.name}”?`,
              body: h('p', null, 'The partly imported image is discarded.'),
              confirmLabel: 'Cancel import',
              danger: true,
            }
          : {
              title: `Delete image “${img.name}”?`,
              body: h('p', null, 'The golden image is deleted from the store. Clients based on it must be switched or deleted first.'),
              confirmLabel: 'Delete image',
              danger: true,
            },
      );
      if (!ok) return;
    }
    try {
      await api('DELETE', `/api/images/${seg(img.name)}`);
      toast(img.state === 'ready' ? `Deleted “${img.name}”` : img.state === 'importing' ? `Import of “${img.name}” cancelled` : `Dismissed “${img.name}”`);
      props.changed();
    } catch (err) {
      toastError('Delete failed', err);
    }
  };
  const toggleRescue = async () => {
    try {
      await api('PATCH', `/api/images/${seg(img.name)}`, { rescue: !img.rescue });
      toast(img.rescue ? `“${img.name}” is no longer a rescue image` : `“${img.name}” can now rescue clients (client page → next boot)`);
      props.changed();
    } catch (err) {
      toastError('Could not change it', err);
    }
  };
  return h(
    'div',
    { class: 'row image-row', 'data-image': img.name },
    h(
      'div',
      { class: 'cell main' },
      h('div', { class: 'title' }, img.name, img.rescue ? h('span', { class: 'tag rescue' }, 'rescue') : null),
      h(
        'div',
        { class: 'sub', title: when(img.createdAt) },
        `added ${ago(img.createdAt)}`,
        img.state === 'ready' && img.rescue !== undefined
          ? [
              ' · ',
              h(
                'button',
                { class: 'linkish small-link', onClick: toggleRescue, title: 'A rescue image boots once with a client’s own disk attached as a second disk' },
                img.rescue ? 'not a rescue image' : 'use as rescue image',
              ),
            ]
          : null,
      ),
    ),
    h(
      'div',
      { class: 'cell' },
      img.state === 'importing'
        ? h(
            'div',
            { class: 'importing' },
            h('span', { class: 'muted' }, f === undefined ? 'importing…' : `importing ${Math.round(f * 100)} %`),
            h(Progress, { value: f, label: `import of ${img.name}` }),
          )
        : img.state === 'failed'
          ? h('span', { class: 'bad-text', title: img.error }, `failed${img.error ? `: ${img.error}` : ''}`)
          : h(Dot, { state: 'ok', text: 'ready' }),
    ),
    h('div', { class: 'cell num' }, h('span', { class: 'label' }, 'size'), bytes(img.sizeBytes)),
    h('div', { class: 'cell num' }, h('span', { class: 'label' }, 'stored'), bytes(img.usedBytes)),
    h('div', { class: 'cell num' }, h('span', { class: 'label' }, 'clients'), String(users ?? 0)),
    h('div', { class: 'cell end' }, h(ActionButton, { class: 'small ghost-danger', onClick: remove }, verb)),
  );
}

export function ImagesPage(): El {
  const images = usePoll(() => api<{ images: Image[] }>('GET', '/api/images').then((r) => r.images));
  const list = images.data ?? [];
  return h(
    'div',
    { class: 'page' },
    h(Card, { title: 'Import a golden image' }, h(ImportForm, { onStarted: images.reload })),
    h(
      Card,
      { title: h('span', null, 'Golden images ', h('span', { class: 'count' }, list.length ? String(list.length) : '')) },
      images.error ? h('p', { class: 'error' }, images.error) : null,
      images.data === undefined
        ? images.error
          ? null
          : h('p', { class: 'muted' }, 'Loading…')
        : list.length === 0
          ? h(Empty, null, 'No images yet. Upload a raw or qcow2 disk image of an installed system.')
          : h(
              'div',
              { class: 'rows' },
              h(HeadRow, { class: 'image-row', cols: ['Image', 'State', 'Size', 'Stored', 'Clients', ''] }),
              list.map((img) => h(ImageRow, { key: img.name, img, changed: images.reload })),
            ),
    ),
  );
}
