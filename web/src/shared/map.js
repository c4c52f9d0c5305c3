// Maps over Leaflet. The tile URL comes from the platform's settings (none: a plain
// background); markers and tracks are vector overlays, drawn with or without tiles.
import L from 'leaflet';
import 'leaflet/dist/leaflet.css';

const COLOURS = { ok: '#1a7f37', degraded: '#9a6700', down: '#cf222e', unknown: '#6e7781', maintenance: '#0969da' };

export function createMap(el, { tileUrl = '', attribution = '', center = [37.5, 127.0], zoom = 11 } = {}) {
  // No animations: a screen that leaves while a zoom is animating removes the map under
  // Leaflet's pending frame (an uncaught '_leaflet_pos' error), and live screens redraw often.
  const map = L.map(el, {
    zoomControl: true,
    attributionControl: Boolean(tileUrl),
    zoomAnimation: false,
    fadeAnimation: false,
    markerZoomAnimation: false,
  }).setView(center, zoom);
  if (tileUrl) L.tileLayer(tileUrl, { attribution, maxZoom: 19 }).addTo(map);
  else el.classList.add('no-tiles');
  const layer = L.layerGroup().addTo(map);
  return {
    map,
    // points: [{id, lat, lon, label, status}]
    setMarkers(points, { onSelect } = {}) {
      layer.clearLayers();
      const bounds = [];
      for (const point of points) {
        if (typeof point.lat !== 'number' || typeof point.lon !== 'number') continue;
        const marker = L.circleMarker([point.lat, point.lon], {
          radius: 9,
          color: '#fff',
          weight: 2,
          fillColor: COLOURS[point.status] || COLOURS.unknown,
          fillOpacity: 0.95,
          className: `marker marker-${point.status || 'unknown'}`,
        });
        marker.bindTooltip(point.label, { permanent: true, direction: 'right', className: 'map-label' });
        if (onSelect) marker.on('click', () => onSelect(point));
        marker.addTo(layer);
        bounds.push([point.lat, point.lon]);
      }
      if (bounds.length) map.fitBounds(bounds, { padding: [40, 40], maxZoom: 14 });
    },
    track(points, colour = '#0969da') {
      return L.polyline(points, { color: colour, weight: 4 }).addTo(layer);
    },
    invalidate() {
      map.invalidateSize();
    },
  };
}
