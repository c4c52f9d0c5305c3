// The live maps: a trail that grows and markers that move, as vector overlays on the
// shared map (works without tiles). Each marker is an SVG path whose class names it.
import L from 'leaflet';
import { config } from '../../shared/dom.js';
import { createMap } from '../../shared/map.js';

const COLOURS = ['#0550ae', '#b42318', '#1a7f37', '#7d4e00', '#8250df', '#bf3989'];

export function liveMap(el) {
  const base = createMap(el, { tileUrl: config().tileUrl || '', zoom: 16 });
  const map = base.map;
  const markers = new Map();
  let trail = null;
  let placed = false;

  function follow(latlng) {
    if (!placed) {
      map.setView(latlng, 17, { animate: false });
      placed = true;
    } else if (!map.getBounds().pad(-0.1).contains(latlng)) {
      map.panTo(latlng, { animate: false });
    }
  }

  return {
    // The runner's own trail (and marker), extended point by point.
    extend(lat, lon) {
      const latlng = [lat, lon];
      if (!trail) trail = L.polyline([latlng], { color: COLOURS[0], weight: 4, className: 'run-trail' }).addTo(map);
      else trail.addLatLng(latlng);
      this.move('self', lat, lon, { colour: COLOURS[0], className: 'runner-marker' });
    },
    // A marker by id: created on first sight, moved afterwards.
    move(id, lat, lon, { label = '', colour = null, className = 'member-marker', follow: centre = true } = {}) {
      const latlng = [lat, lon];
      let marker = markers.get(id);
      if (!marker) {
        const fill = colour || COLOURS[(markers.size + 1) % COLOURS.length];
        marker = L.circleMarker(latlng, { radius: 9, color: '#fff', weight: 2, fillColor: fill, fillOpacity: 0.95, className });
        if (label) marker.bindTooltip(label, { permanent: true, direction: 'right', className: 'map-label' });
        marker.addTo(map);
        markers.set(id, marker);
      } else {
        marker.setLatLng(latlng);
      }
      if (centre) follow(latlng);
    },
    // Everyone in view (a group on the move).
    fit() {
      const bounds = [...markers.values()].map((marker) => marker.getLatLng());
      if (bounds.length) map.fitBounds(bounds, { padding: [40, 40], maxZoom: 17, animate: false });
    },
    forget(id) {
      markers.get(id)?.remove();
      markers.delete(id);
    },
    invalidate() {
      map.invalidateSize();
    },
  };
}
