// The app's service worker (scope /app): the shell and its hashed assets load without a
// network; API calls always go to the network (the last entry pass is kept by the page).
const CACHE = 'smartgym-app-v1';

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(['/app', '/app/manifest.webmanifest'])).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((names) => Promise.all(names.filter((name) => name !== CACHE).map((name) => caches.delete(name))))
      .then(() => self.clients.claim()),
  );
});

// The page names the assets it loaded (their names carry content hashes, so a cached copy
// is never stale).
self.addEventListener('message', (event) => {
  const paths = (event.data && event.data.cache) || [];
  const own = paths.filter((path) => typeof path === 'string' && (path.startsWith('/static/') || path.startsWith('/app')));
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(own)).catch(() => {}));
});

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== 'GET' || url.origin !== self.location.origin) return;
  if (url.pathname.startsWith('/static/')) {
    event.respondWith(
      caches.match(event.request).then(
        (hit) =>
          hit ||
          fetch(event.request).then((response) => {
            if (response.ok) {
              const copy = response.clone();
              caches.open(CACHE).then((cache) => cache.put(event.request, copy));
            }
            return response;
          }),
      ),
    );
  } else if (event.request.mode === 'navigate' && url.pathname === '/app') {
    // Network first: a new release's shell wins as soon as the network answers.
    event.respondWith(
      fetch(event.request)
        .then((response) => {
          const copy = response.clone();
          caches.open(CACHE).then((cache) => cache.put('/app', copy));
          return response;
        })
        .catch(() => caches.match('/app')),
    );
  } else if (url.pathname === '/app/manifest.webmanifest') {
    event.respondWith(fetch(event.request).catch(() => caches.match('/app/manifest.webmanifest')));
  }
});
